// An unmodified socket.io-client 4.x (default options unless the config
// says otherwise), driven line by line, for the channels tests.
//
// usage: node sio_client.cjs MODULE_DIR CONFIG_JSON
//   MODULE_DIR: where `socket.io-client` is installed (npm --prefix)
//   CONFIG_JSON: {"url", "auth"?: {...}, "extraHeaders"?: {...},
//                 "transports"?: [...], "timeout"?: seconds}
//
// Prints one JSON line per happening on stdout:
//   {"connect": id, "transport": name}   connected (engine transport then)
//   {"connect_error": {"message", "data"}}
//   {"upgrade": name}                    the engine upgraded its transport
//   {"event": name, "args": [...]}       a server event
//   {"ack": n, "args": [...]}            the answer to stdin line n (from 1)
//   {"disconnect": reason}
// and reads JSON lines on stdin:
//   {"emit": name, "args": [...]}        emits with an ack callback (10 s)
//   {"disconnect": true}                 disconnects (the client ends)
// The process ends on {"disconnect": true}, a connect_error, end of stdin,
// or after `timeout` seconds with {"timeout": seconds}.
const [moduleDir, configText] = process.argv.slice(2);
const { io } = require(require.resolve('socket.io-client', { paths: [moduleDir] }));
const readline = require('node:readline');

const config = JSON.parse(configText);
const timeout = config.timeout ?? 120;
const emit = (value) => process.stdout.write(JSON.stringify(value) + '\n');
setTimeout(() => { emit({ timeout }); process.exit(0); }, timeout * 1000).unref();

const options = { reconnection: false };
if (config.auth) options.auth = config.auth;
if (config.extraHeaders) options.extraHeaders = config.extraHeaders;
if (config.transports) options.transports = config.transports;
const socket = io(config.url, options);

socket.on('connect', () => {
  const engine = socket.io.engine;
  emit({ connect: socket.id, transport: engine.transport.name });
  engine.on('upgrade', (transport) => emit({ upgrade: transport.name }));
});
socket.on('connect_error', (err) => {
  emit({ connect_error: { message: err.message, data: err.data ?? null } });
  process.exit(0);
});
socket.onAny((name, ...args) => emit({ event: name, args }));
socket.on('disconnect', (reason) => emit({ disconnect: reason }));

let line = 0;
const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (text) => {
  line += 1;
  const n = line;
  const command = JSON.parse(text);
  if (command.disconnect) {
    socket.disconnect();
    setTimeout(() => process.exit(0), 50);
    return;
  }
  socket.timeout(10000).emit(command.emit, ...(command.args ?? []), (err, ...args) => {
    emit(err ? { ack: n, error: 'no ack within 10 s' } : { ack: n, args });
  });
});
lines.on('close', () => { socket.disconnect(); setTimeout(() => process.exit(0), 50); });
