/* envelope.c — building and clearing an SMTP envelope. */
#include "mail/envelope.h"

#include <stdlib.h>
#include <string.h>

void envelope_init(struct envelope *env)
{
    memset(env, 0, sizeof *env);
}

bool envelope_add_rcpt(struct envelope *env, const char *address,
                       unsigned notify, const char *orcpt)
{
    if (strlen(address) >= ENVELOPE_ADDR_MAX)
        return false;
    if (env->n_rcpts == env->cap_rcpts) {
        size_t cap = env->cap_rcpts ? env->cap_rcpts * 2 : 8;
        struct envelope_rcpt *n = realloc(env->rcpts, cap * sizeof *n);
        if (!n)
            return false;
        env->rcpts = n;
        env->cap_rcpts = cap;
    }
    struct envelope_rcpt *r = &env->rcpts[env->n_rcpts];
    memset(r, 0, sizeof *r);
    memcpy(r->address, address, strlen(address) + 1);
    r->notify = notify;
    if (orcpt && !(r->orcpt = strdup(orcpt)))
        return false;
    env->n_rcpts++;
    return true;
}

void envelope_reset(struct envelope *env)
{
    for (size_t i = 0; i < env->n_rcpts; i++)
        free(env->rcpts[i].orcpt);
    free(env->rcpts);
    free(env->envid);
    env->rcpts = NULL;
    env->n_rcpts = env->cap_rcpts = 0;
    env->envid = NULL;
    env->sender[0] = '\0';
    env->ret = DSN_RET_UNSET;
    env->smtputf8 = env->body_8bit = false;
    env->declared_size = 0;
}
