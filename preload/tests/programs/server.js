// An HTTP server listening on [::]:PORT, dual-stack, the way Node servers
// usually do; answers "node PID". Prints "listening :: PORT PID" once up.
const http = require('http');

const port = Number(process.argv[2]);
const server = http.createServer((req, res) => res.end(`node ${process.pid}\n`));
server.on('error', (e) => {
  console.error(`listen: ${e.code}`);
  process.exit(1);
});
server.listen(port, '::', () => {
  console.log(`listening :: ${server.address().port} ${process.pid}`);
});
