/* retr.c — RETR and TOP: streams a message from the store in bounded
 * chunks, converting to CRLF with dot-stuffing (core/mailstream), and waits
 * for the socket to drain before reading more, so a 50 MB message costs no
 * more memory than a small one. */
#include <stdio.h>
#include <stdlib.h>

#include "core/log.h"
#include "net/conn.h"
#include "pop3/session.h"
#include "store/store.h"

#define CHUNK (64 * 1024)
#define HIGH_WATER (256 * 1024)
#define LOW_WATER (64 * 1024)

void pop3_retr_abort(struct pop3_session *s)
{
    if (s->reader) {
        store_reader_close(s->reader);
        s->reader = NULL;
    }
}

static void finish(struct pop3_session *s)
{
    mailstream_finish(&s->ms, conn_output(s->conn));
    pop3_retr_abort(s);
    s->retr_count++;
    s->retr_octets += s->stream_octets;
    pop3_session_idle(s);
}

void pop3_retr_continue(struct pop3_session *s)
{
    if (!s->reader || !s->conn)
        return;
    char buf[CHUNK];
    while (conn_output_len(s->conn) < HIGH_WATER) {
        ssize_t n = store_reader_read(s->reader, buf, sizeof(buf));
        if (n < 0) {
            log_error("event=retr_error session=%s user=%s msg=%zu reason=read_failed",
                      s->id, s->authed, s->streaming_msg);
            pop3_retr_abort(s);
            /* The +OK is out: the only honest ending is to close. */
            conn_close(s->conn, "read_error");
            return;
        }
        if (n == 0 || !mailstream_encode(&s->ms, buf, (size_t)n, conn_output(s->conn))) {
            if (n > 0)
                s->stream_octets += (uint64_t)n;
            finish(s);
            return;
        }
        s->stream_octets += (uint64_t)n;
    }
    conn_want_writable(s->conn, LOW_WATER);
}

void pop3_retr_start(struct pop3_session *s, size_t msg, long body_lines)
{
    struct store_reader *r = NULL;
    enum store_status st = store_reader_open(s->mb, msg - 1, &r);
    if (st == STORE_GONE) {
        pop3_reply(s, "-ERR Message %zu is no longer available (removed by another "
                      "program)", msg);
        return;
    }
    if (st != STORE_OK) {
        log_error("event=retr_error session=%s user=%s msg=%zu reason=%s", s->id,
                  s->authed, msg, store_status_str(st));
        pop3_reply(s, "-ERR [SYS/TEMP] Cannot read message %zu", msg);
        return;
    }
    s->reader = r;
    s->streaming_msg = msg;
    s->stream_octets = 0;
    s->busy = true;
    mailstream_init(&s->ms, body_lines);
    if (body_lines < 0)
        pop3_reply(s, "+OK %llu octets", (unsigned long long)store_size(s->mb, msg - 1));
    else
        pop3_reply(s, "+OK Top of message %zu follows", msg);
    pop3_retr_continue(s);
}
