// The get-port pattern across processes: a launcher probes a port (listen,
// close), then starts the server on the port the probe said was free and
// checks that the URL it prints reaches that server.
const { spawn } = require("child_process");
const http = require("http");
const net = require("net");

const wanted = Number(process.argv[2]);
const serverCode = `
  require("http").createServer((q, r) => r.end("server " + process.pid))
    .listen(Number(process.env.PORT), () => console.log("listening"));
`;

const probe = net.createServer();
probe.listen(wanted, () =>
  probe.close(() => {
    const server = spawn(process.execPath, ["-e", serverCode], {
      env: { ...process.env, PORT: String(wanted) },
      stdio: ["ignore", "pipe", "inherit"],
    });
    server.stdout.once("data", () => {
      const url = `http://localhost:${wanted}/`;
      console.log("serving at " + url);
      http
        .get(url, (res) => {
          let body = "";
          res.on("data", (chunk) => (body += chunk));
          res.on("end", () => {
            console.log("check: " + body);
            server.kill();
            process.exit(body === "server " + server.pid ? 0 : 1);
          });
        })
        .on("error", (e) => {
          console.log("check failed: " + e.message);
          server.kill();
          process.exit(1);
        });
    });
  }),
);
