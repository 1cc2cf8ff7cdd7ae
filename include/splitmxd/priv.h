/*
 * priv.h - dropping root after the privileged startup steps.
 *
 * splitmxd binds its listeners, reads TLS keys and opens the spool as
 * root, then becomes the configured user for good.
 */
#ifndef SPLITMX_PRIV_H
#define SPLITMX_PRIV_H

#include <sys/types.h>

#include "sbuf.h"

/* Looks up user; -1 with err set when unknown. */
int priv_lookup(const char *user, uid_t *uid_out, gid_t *gid_out,
    struct sbuf *err);

/*
 * Gives the spool directory, its subdirectories and their files to
 * uid:gid (two levels deep; the spool layout is flat). -1 with err set.
 */
int priv_chown_spool(const char *dir, uid_t uid, gid_t gid, struct sbuf *err);

/* setgroups, setresgid, setresuid, then proves root cannot be regained. */
int priv_drop(uid_t uid, gid_t gid, struct sbuf *err);

#endif
