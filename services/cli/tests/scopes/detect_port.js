// The detect-port / get-port pattern: probe a port (listen, close), then
// listen on the port the probe said was free, print the URL, and check that
// the URL reaches this very server.
const http = require("http");
const net = require("net");

const wanted = Number(process.argv[2]);

function probe(port) {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(port, () => server.close(() => resolve(port)));
  });
}

probe(wanted).then((port) => {
  const server = http.createServer((req, res) => res.end("self " + process.pid));
  server.listen(port, () => {
    const url = `http://localhost:${port}/`;
    console.log("serving at " + url);
    http
      .get(url, (res) => {
        let body = "";
        res.on("data", (chunk) => (body += chunk));
        res.on("end", () => {
          console.log("self-check: " + body);
          process.exit(body === "self " + process.pid ? 0 : 1);
        });
      })
      .on("error", (e) => {
        console.log("self-check failed: " + e.message);
        process.exit(1);
      });
  });
});
