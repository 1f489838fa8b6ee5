/* quit.c — QUIT in TRANSACTION state (RFC 1939 UPDATE state): the marked
 * messages are removed together by a job on the worker pool, then the
 * maildrop is unlocked and the client gets its answer. A connection that
 * drops before QUIT never gets here, so it deletes nothing. */
#include <stdlib.h>

#include "core/jobs.h"
#include "core/log.h"
#include "net/conn.h"
#include "net/server.h"
#include "pop3/session.h"
#include "store/store.h"

struct quit_job {
    struct pop3_session *s;     /* holds a reference */
    struct store_mailbox *mb;   /* taken from the session */
    bool *deleted;              /* taken from the session */
    size_t n_deleted;
    enum store_status st;
};

static void quit_work(void *arg)
{
    struct quit_job *j = arg;
    j->st = j->n_deleted ? store_commit(j->mb, j->deleted) : STORE_OK;
    store_close(j->mb);
}

static void quit_done(void *arg)
{
    struct quit_job *j = arg;
    struct pop3_session *s = j->s;
    size_t left = s->count - j->n_deleted;
    log_info("event=quit session=%s user=%s deleted=%zu left=%zu result=%s", s->id,
             s->authed, j->n_deleted, left, store_status_str(j->st));
    if (j->st == STORE_OK)
        pop3_reply(s, "+OK pobox signing off (%zu messages left)", left);
    else
        pop3_reply(s, "-ERR [SYS/TEMP] Some deleted messages were not removed");
    free(j->deleted);
    free(j);
    s->busy = false;
    pop3_session_close(s, "quit");
    pop3_session_unref(s);
}

void pop3_quit_commit(struct pop3_session *s)
{
    struct quit_job *j = calloc(1, sizeof(*j));
    if (!j) {
        pop3_reply(s, "-ERR [SYS/TEMP] Out of memory, nothing was deleted");
        pop3_session_close(s, "oom");
        return;
    }
    j->s = s;
    j->mb = s->mb;
    j->deleted = s->deleted;
    j->n_deleted = s->n_deleted;
    s->mb = NULL;
    s->deleted = NULL;
    s->state = POP3_UPDATE;
    s->busy = true;
    pop3_session_ref(s);
    if (!jobs_submit(s->srv->jobs, conn_base(s->conn), quit_work, quit_done, j)) {
        s->mb = j->mb;
        s->deleted = j->deleted;
        s->state = POP3_TRANSACTION;
        s->busy = false;
        free(j);
        pop3_session_unref(s);
        pop3_reply(s, "-ERR [SYS/TEMP] Server busy, nothing was deleted");
    }
}
