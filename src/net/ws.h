/* WebSocket (RFC 6455) server connections on libuv + wslay: the upgrade handshake, framing,
 * ping/pong, the close handshake, capped receive and send queues, and refcounted pre-encoded
 * messages so one update broadcast to N connections is framed once and never copied.
 *
 * Threading: an hk_ws_t belongs to the loop thread of the HTTP server that accepted it; every
 * hk_ws_* function taking an hk_ws_t runs on that thread only. hk_ws_msg_* functions (new, ref,
 * unref, payload) may be called from any thread: messages are immutable and their reference
 * count is atomic, so a worker may encode one and hand it to the loop.
 *
 * State machine, close handshake and queue caps: docs/internals/websocket.md. */
#ifndef HK_WS_H
#define HK_WS_H

#include "core/common.h"
#include "net/http.h"

typedef struct hk_ws_s hk_ws_t;
typedef struct hk_ws_msg_s hk_ws_msg_t;

/* Data opcodes accepted by hk_ws_msg_new(). */
enum { HK_WS_OP_TEXT = 0x1, HK_WS_OP_BINARY = 0x2 };

/* Close codes used by this module (RFC 6455 section 7.4.1). Applications may use 4000-4999. */
enum {
    HK_WS_CLOSE_NORMAL = 1000,
    HK_WS_CLOSE_GOING_AWAY = 1001,
    HK_WS_CLOSE_PROTOCOL_ERROR = 1002,
    HK_WS_CLOSE_NO_STATUS = 1005, /* reported only: the peer's close frame had no code */
    HK_WS_CLOSE_ABNORMAL = 1006,  /* reported only: the TCP connection ended without a close */
    HK_WS_CLOSE_INVALID_DATA = 1007,
    HK_WS_CLOSE_POLICY = 1008, /* also: slow consumer */
    HK_WS_CLOSE_TOO_BIG = 1009,
    HK_WS_CLOSE_INTERNAL = 1011,
};

/* Bytes of every send queue reserved for the final close frame (2 header + 2 code + 123). */
#define HK_WS_CLOSE_RESERVE 128
/* Smallest accepted max_queue_bytes. */
#define HK_WS_MIN_QUEUE_BYTES 1024
/* Length of a Sec-WebSocket-Accept value (base64 of a SHA-1 digest), without the NUL. */
#define HK_WS_ACCEPT_LEN 28

/* A complete text or binary message from the client. `data` is not NUL-terminated, is only valid
 * during the call, and text is valid UTF-8 (checked before the call). The callback may send, close
 * (no further data callbacks follow then) or do nothing; it must not free anything of the ws. */
typedef void (*hk_ws_data_cb)(hk_ws_t *ws, const char *data, size_t len);

/* The connection is gone (TCP closed, every handle closed, every queued buffer released). Called
 * exactly once per accepted connection, on the loop thread; the hk_ws_t is freed right after it
 * returns, so drop every pointer to it here. `code` is the close code that ended the connection:
 * the one we sent when we started the close (hk_ws_close, 1002/1007/1009 for bad input, 1008 for a
 * slow consumer), the peer's when it started (1005 if it gave none), 1006 when the TCP connection
 * ended without a close handshake (reason "ping timeout" when the client stopped answering).
 * `reason` is NUL-terminated, possibly "". Sending from here fails with HK_ESTATE. */
typedef void (*hk_ws_close_cb)(hk_ws_t *ws, uint16_t code, const char *reason);

/* A message over max_message_bytes has begun (`len`: its length so far, from the frame headers;
 * none of it is read). The connection closes with 1009 right after this returns; a message sent
 * from here (an error report) still goes out before the close frame. */
typedef void (*hk_ws_too_big_cb)(hk_ws_t *ws, uint64_t len);

typedef struct {
    size_t max_message_bytes;    /* largest incoming message (all fragments); over it: close 1009.
                                    0 = 1 MiB. Peak memory per connection is about twice this. */
    size_t max_queue_bytes;      /* outgoing bytes not yet handed to the kernel; a send when more
                                    than this is queued already closes the connection with 1008
                                    "slow consumer" (so at most this plus one message is held).
                                    0 = 4 MiB; at least HK_WS_MIN_QUEUE_BYTES. */
    uint64_t ping_interval_ms;   /* ping a client silent for this long; no sign of life within two
                                    intervals after a ping: connection dropped (1006). 0 = never. */
    uint64_t close_timeout_ms;   /* bound on the close handshake and lingering close; 0 = 5000 */
    hk_ws_data_cb on_text;       /* NULL: text messages are ignored */
    hk_ws_data_cb on_binary;     /* NULL: binary messages are ignored */
    hk_ws_close_cb on_close;     /* may be NULL */
    hk_ws_too_big_cb on_too_big; /* may be NULL */
    void *data;                  /* initial hk_ws_get_data() value */
} hk_ws_config_t;

/*
 * Checks that req is a WebSocket version 13 upgrade request: GET, `Upgrade: websocket`,
 * `Connection` listing `upgrade` (case-insensitive tokens), `Sec-WebSocket-Version: 13` and a
 * `Sec-WebSocket-Key` that is 16 bytes in base64. Returns 0 when it is, else the HTTP status to
 * answer with (400, or 426 for a missing or other version) and sets *detail (may be NULL) to a
 * static reason. Does not touch req.
 */
int hk_ws_check_upgrade(const hk_http_req_t *req, const char **detail);

/*
 * Accepts a WebSocket upgrade: validates req (hk_ws_check_upgrade), takes the TCP connection from
 * the HTTP server (hk_http_hijack), answers 101 with Sec-WebSocket-Accept, and from the next loop
 * iteration reads frames (bytes the client sent behind its request included). cfg is copied.
 *
 * Returns 0 and *out: req is released, and cfg->on_close will be called exactly once; *out stays
 * valid until then. No callback runs before hk_ws_accept returns. On failure nothing changed and
 * the caller still owns req and must answer it (hk_ws_reject does): HK_EINVAL for an invalid
 * upgrade request or config, HK_ESTATE when the connection cannot be taken over (pipelined
 * requests, server shutting down), HK_ENOMEM. Loop thread only.
 */
int hk_ws_accept(hk_http_req_t *req, const hk_ws_config_t *cfg, hk_ws_t **out);

/* Answers req after a failed hk_ws_accept (err is its return value): 400 or 426 (with
 * `Sec-WebSocket-Version: 13`) for an invalid upgrade, 503 otherwise; JSON {"detail": ...}.
 * Releases req like hk_http_respond(). Loop thread only. */
void hk_ws_reject(hk_http_req_t *req, int err);

/* Computes the Sec-WebSocket-Accept value for a Sec-WebSocket-Key of key_len bytes into
 * out[HK_WS_ACCEPT_LEN + 1] (NUL-terminated). Returns 0 or HK_EINVAL. Thread-safe. */
int hk_ws_accept_key(const char *key, size_t key_len, char out[HK_WS_ACCEPT_LEN + 1]);

/*
 * Makes an immutable message: the complete unmasked frame (header + a copy of data[0..len)),
 * encoded once, with one reference owned by the caller. opcode is HK_WS_OP_TEXT (data must be
 * UTF-8) or HK_WS_OP_BINARY. Returns NULL for a bad opcode or when allocation fails. Any thread.
 */
hk_ws_msg_t *hk_ws_msg_new(int opcode, const void *data, size_t len);

/* Adds a reference and returns msg. Any thread. */
hk_ws_msg_t *hk_ws_msg_ref(hk_ws_msg_t *msg);

/* Drops a reference; the last one frees the message. NULL-safe. Any thread. */
void hk_ws_msg_unref(hk_ws_msg_t *msg);

/* The payload (without the frame header) and its length. Any thread. */
const void *hk_ws_msg_payload(const hk_ws_msg_t *msg, size_t *len);

/*
 * Queues msg after everything already queued on ws; the connection takes its own reference
 * (released once the bytes are written or dropped), the caller keeps its own. The frame bytes
 * are written from the shared buffer: nothing is copied. Returns 0; HK_ESTATE when ws is closing
 * or closed (nothing queued); HK_ELIMIT when the queue cap would be exceeded: the connection is
 * then being closed with 1008 "slow consumer" and its unsent messages dropped. Loop thread only.
 */
int hk_ws_send_shared(hk_ws_t *ws, hk_ws_msg_t *msg);

/* Sends one text (UTF-8, not checked) or binary message; data is copied once, into the frame.
 * Same return values as hk_ws_send_shared, plus HK_ENOMEM. Loop thread only. */
int hk_ws_send_text(hk_ws_t *ws, const char *data, size_t len);
int hk_ws_send_binary(hk_ws_t *ws, const void *data, size_t len);

/*
 * Starts the close handshake: queues a close frame with code (1000-1003, 1007-1011 or
 * 3000-4999; anything else is sent as 1000) and reason (NULL or UTF-8, cut to 123 bytes) after
 * the queued messages, refuses further sends, waits for the client's close frame, then closes
 * TCP. The whole handshake is bounded by close_timeout_ms, after which TCP is closed anyway.
 * No-op when already closing. on_close follows later, never from inside this call.
 * Loop thread only.
 */
void hk_ws_close(hk_ws_t *ws, uint16_t code, const char *reason);

/* Bytes queued for the client and not yet handed to the kernel (frames in flight included). */
size_t hk_ws_queued_bytes(const hk_ws_t *ws);

/* True until a close has started (by either side) or the connection is gone. */
bool hk_ws_is_open(const hk_ws_t *ws);

/* Process-wide connection number, for logs. */
uint64_t hk_ws_id(const hk_ws_t *ws);

/* Peer address as the HTTP server reported it for the upgrade request. */
const char *hk_ws_remote_addr(const hk_ws_t *ws);

/* Application pointer (initially cfg->data); never touched by this module. */
void hk_ws_set_data(hk_ws_t *ws, void *data);
void *hk_ws_get_data(const hk_ws_t *ws);

#endif
