// The shop's frontend: a page naming its worktree, and a dev proxy that
// sends /api to the backend at localhost:<backend.port>, the port checked
// into the project.
const fs = require("fs");
const http = require("http");
const path = require("path");

const name = path.basename(process.cwd());
const port = Number(process.env.PORT || fs.readFileSync("frontend.port", "utf8"));
const backend = Number(fs.readFileSync("backend.port", "utf8"));

http
  .createServer((req, res) => {
    if (req.url.startsWith("/api")) {
      http
        .get({ host: "localhost", port: backend, path: req.url }, (up) => {
          let body = "";
          up.on("data", (chunk) => (body += chunk));
          up.on("end", () => res.end(body));
        })
        .on("error", (e) => {
          res.statusCode = 502;
          res.end("proxy error: " + e.message);
        });
      return;
    }
    res.setHeader("content-type", "text/html");
    res.end(`<!doctype html><html><body><h1>frontend of ${name}</h1></body></html>`);
  })
  .listen(port);
