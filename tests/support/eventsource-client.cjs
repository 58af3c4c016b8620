// An independent SSE client for the integration suite: the `eventsource`
// npm package (the WHATWG EventSource for Node: reconnects by itself after
// `retry:`, resends `Last-Event-ID`) opens URL and prints every event it
// receives, and every open and error, as one JSON line on stdout.
//
// usage: node eventsource-client.cjs MODULE_DIR URL EVENT_TYPE...
// (EVENTSOURCE_HEADERS: a JSON object of headers sent on every request)
const [moduleDir, url, ...types] = process.argv.slice(2);
const { EventSource } = require(require.resolve('eventsource', { paths: [moduleDir] }));
const headers = JSON.parse(process.env.EVENTSOURCE_HEADERS || '{}');

const print = (line) => process.stdout.write(JSON.stringify(line) + '\n');
const source = new EventSource(url, {
  fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, ...headers } }),
});
source.onopen = () => print({ type: 'open' });
source.onerror = (event) =>
  print({ type: 'error', code: event.code ?? null, readyState: source.readyState });
for (const type of types) {
  source.addEventListener(type, (event) =>
    print({ type, id: event.lastEventId, data: JSON.parse(event.data) }));
}
