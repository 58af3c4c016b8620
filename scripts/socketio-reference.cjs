// The Node.js socket.io reference for `tidings bench socketio`: the same
// channel-post broadcast as Tidings' Socket.IO surface (spec 003), with
// socket.io 4.8.4's default options (CORS open), so that both servers can be
// measured by one client in one run. It is a reference for speed, not for
// auth: every CONNECT is accepted.
//
// Usage: node scripts/socketio-reference.cjs
//   PORT        listen port on 127.0.0.1 (default 3030; 0 picks a free one)
//   SIO_PREFIX  npm prefix holding socket.io (default target/sio-reference,
//               made with `npm --prefix target/sio-reference install socket.io@4.8.4`)
// Prints `listening on <port>` once it accepts connections.
//
// HTTP:   POST /api/v1/communication/channels             -> 201 {"data":{"id":N}}
//         POST /api/v1/communication/channels/{id}/posts  -> 201 {"data":{"postId","eventId"}}
//         (body {"text","authorId"}; the post's envelope is stored and emitted to the room)
// Socket: communication:join_channel_posts {channelId}, ack -> {ok:true,data:{room}}
//         communication:sync_channel_posts {channelId,sinceEventId,limit}, ack ->
//           {ok:true,data:{status:"ok"|"too_old"|"unknown",events,hasMore,latestEventId}}
// Limits: request bodies up to MAX_BODY bytes; a channel keeps its last
// MAX_HISTORY envelopes (a sync from an older id answers "too_old").
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');
const path = require('node:path');

const prefix = path.resolve(process.env.SIO_PREFIX || path.join(__dirname, '..', 'target', 'sio-reference'));
const { Server } = require(path.join(prefix, 'node_modules', 'socket.io'));

const PORT = Number(process.env.PORT || 3030);
const MAX_BODY = 1 << 20;
const MAX_HISTORY = 1_000_000;
const MAX_SYNC_LIMIT = 500;
const POST_CREATED = 'communication.channel_post.created';

/** channelId -> { events: [envelope], index: Map<eventId, absolute position>, dropped } */
const channels = new Map();
let nextChannelId = 1;
let nextPostId = 1;

// Time-ordered ids shaped like UUIDv7: 48-bit milliseconds, a 12-bit
// counter within the millisecond (so ids sort in creation order), random rest.
let lastMs = 0;
let counter = 0;
function eventId() {
  let ms = Date.now();
  if (ms <= lastMs) {
    counter += 1;
    if (counter > 0xfff) {
      lastMs += 1;
      counter = 0;
    }
    ms = lastMs;
  } else {
    lastMs = ms;
    counter = 0;
  }
  const time = ms.toString(16).padStart(12, '0');
  const rand = crypto.randomBytes(8).toString('hex');
  const variant = (8 + (parseInt(rand[0], 16) & 3)).toString(16);
  return `${time.slice(0, 8)}-${time.slice(8)}-7${counter.toString(16).padStart(3, '0')}-` +
    `${variant}${rand.slice(1, 4)}-${rand.slice(4)}`;
}

const roomOf = (channelId) => `communication:channel:${channelId}:posts`;

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function error(res, status, code, message) {
  reply(res, status, { error: { code, message } });
}

// Reads a JSON body of at most MAX_BODY bytes; calls back with (err, value).
function readJson(req, done) {
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    try {
      done(null, JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
    } catch (err) {
      done(err);
    }
  });
}

// Stores a post's envelope and broadcasts it to the channel's room.
function publish(channelId, channel, body) {
  const postId = nextPostId++;
  const now = new Date().toISOString();
  const envelope = {
    eventId: eventId(),
    eventType: POST_CREATED,
    occurredAt: now,
    data: { postId, channelId, text: body.text, authorId: body.authorId, createdAt: now },
  };
  channel.index.set(envelope.eventId, channel.dropped + channel.events.length);
  channel.events.push(envelope);
  if (channel.events.length > MAX_HISTORY) {
    channel.index.delete(channel.events.shift().eventId);
    channel.dropped += 1;
  }
  io.to(roomOf(channelId)).emit(POST_CREATED, envelope);
  return { postId, eventId: envelope.eventId };
}

function handle(req, res) {
  const url = new URL(req.url, 'http://localhost');
  if (req.method !== 'POST') return error(res, 404, 'NOT_FOUND', 'no such route');
  if (url.pathname === '/api/v1/communication/channels') {
    const id = nextChannelId++;
    channels.set(id, { events: [], index: new Map(), dropped: 0 });
    return reply(res, 201, { data: { id } });
  }
  const match = /^\/api\/v1\/communication\/channels\/(\d+)\/posts$/.exec(url.pathname);
  if (!match) return error(res, 404, 'NOT_FOUND', 'no such route');
  const channelId = Number(match[1]);
  const channel = channels.get(channelId);
  if (!channel) return error(res, 404, 'NOT_FOUND', 'no such channel');
  readJson(req, (err, body) => {
    if (err || typeof body.text !== 'string') {
      return error(res, 400, 'VALIDATION_ERROR', 'body must be {"text":string,"authorId":string}');
    }
    reply(res, 201, { data: publish(channelId, channel, body) });
  });
}

// The sync answer after `sinceEventId` (from the start when absent).
function sync(channel, since, limit) {
  const latestEventId = channel.events.length ? channel.events[channel.events.length - 1].eventId : null;
  let from = 0;
  if (since !== undefined && since !== null) {
    const at = channel.index.get(since);
    if (at === undefined) {
      const oldest = channel.events[0];
      const status = oldest && since < oldest.eventId ? 'too_old' : 'unknown';
      return { status, events: [], hasMore: false, latestEventId };
    }
    from = at - channel.dropped + 1;
  }
  const events = channel.events.slice(from, from + limit);
  return { status: 'ok', events, hasMore: from + limit < channel.events.length, latestEventId };
}

const server = http.createServer(handle);
const io = new Server(server, { cors: { origin: '*' } });

io.on('connection', (socket) => {
  socket.on('communication:join_channel_posts', (payload, ack) => {
    if (typeof ack !== 'function') return;
    const channelId = Number(payload && payload.channelId);
    if (!channels.has(channelId)) return ack({ ok: false, error: { code: 'NOT_FOUND', message: 'no such channel' } });
    const room = roomOf(channelId);
    socket.join(room);
    ack({ ok: true, data: { room } });
  });
  socket.on('communication:sync_channel_posts', (payload, ack) => {
    if (typeof ack !== 'function') return;
    const channel = channels.get(Number(payload && payload.channelId));
    if (!channel) return ack({ ok: false, error: { code: 'NOT_FOUND', message: 'no such channel' } });
    const limit = Math.min(Math.max(Number(payload.limit) || 100, 1), MAX_SYNC_LIMIT);
    ack({ ok: true, data: sync(channel, payload.sinceEventId, limit) });
  });
});

server.listen(PORT, '127.0.0.1', () => console.log(`listening on ${server.address().port}`));
