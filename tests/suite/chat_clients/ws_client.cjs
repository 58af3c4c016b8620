// An independent WebSocket client for the chat stream tests: Node's `ws`
// package.
//
// usage: node ws_client.cjs MODULE_DIR CONFIG_JSON
//   MODULE_DIR: where `ws` is installed (npm --prefix)
//   CONFIG_JSON: {"url": ..., "headers": {name: value}, "timeout": seconds}
//
// Connects to `url` with `headers`, then:
//   * every line read on stdin is sent as one text message;
//   * end of stdin closes the connection normally (1000);
//   * every text frame received is printed as it came, one line on stdout
//     (a frame that is not JSON is printed as {"invalid": text});
//   * the end is one last line: {"close": code, "reason": text} when the
//     connection closed, {"refused": status} when the server answered the
//     handshake with another status than 101, {"error": text} when the
//     connection failed otherwise, {"timeout": seconds} when `timeout` passed.
const [moduleDir, configText] = process.argv.slice(2);
const WebSocket = require(require.resolve('ws', { paths: [moduleDir] }));
const readline = require('node:readline');

const config = JSON.parse(configText);
const timeout = config.timeout ?? 120;
const emit = (text) => process.stdout.write(text + '\n');
const emitJson = (value) => emit(JSON.stringify(value));
const finish = (value) => {
  emitJson(value);
  process.exit(0);
};

setTimeout(() => finish({ timeout }), timeout * 1000).unref();

const socket = new WebSocket(config.url, { headers: config.headers ?? {} });
socket.on('unexpected-response', (_request, response) => finish({ refused: response.statusCode }));
socket.on('error', (err) => finish({ error: err.message }));
socket.on('open', () => {
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', (line) => socket.send(line));
  lines.on('close', () => socket.close(1000));
});
socket.on('message', (data, isBinary) => {
  if (isBinary) {
    emitJson({ binary: data.length });
    return;
  }
  const text = data.toString('utf8');
  try {
    JSON.parse(text);
    emit(text);
  } catch {
    emitJson({ invalid: text });
  }
});
socket.on('close', (code, reason) => finish({ close: code, reason: reason.toString('utf8') }));
