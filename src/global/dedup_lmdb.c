/*
 * dedup_lmdb.c - the embedded duplicate index on LMDB.
 *
 * Two tables in one environment: "entries" maps the encoded key
 * (dedup_key_encode) to a fixed-layout value, and "bytime" holds
 * first-seen time (8 bytes, big-endian) + encoded key with an empty value,
 * so expiry and eviction walk from the oldest entry without a full scan.
 * Both change in the same write transaction, so they never disagree after
 * a crash. Commits use LMDB's default full sync: a record call returns
 * only after its data is on disk. Blocking: workers_ threads only.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "dedup.h"
#include "sbuf.h"
#include "xmalloc.h"

#define DEDUP_LMDB_VERSION 1
#define DEDUP_LMDB_HDR     (2 + DEDUP_QID_LEN + 8) /* value header */
#define DEDUP_LMDB_TIME    8                       /* bytime key prefix */
/* Generous: real keys are a Message-ID, a 256-octet path and a name. */
#define DEDUP_LMDB_RAWKEY_MAX (DEDUP_MSGKEY_MAX + 8192)
/*
 * Deleting needs free pages too (copy-on-write), so a map that is really
 * full cannot even evict. Records therefore stop at a soft limit: the map
 * less a reserve of 1/16 (at least DEDUP_LMDB_RESERVE_MIN pages) that only
 * expiry and eviction get to use.
 */
#define DEDUP_LMDB_RESERVE_MIN 32
#define DEDUP_LMDB_SOFT_MIN    16 /* smaller maps are refused */
#define DEDUP_LMDB_ROUNDS      4  /* eviction estimate refinements */

/*
 * Value layout: version (1), reply length (1), queue id (16), first seen
 * (8, big-endian two's complement), reply bytes.
 */
struct dedup_lmdb {
	struct dedup base; /* first: handed out as struct dedup */
	MDB_env *env;
	MDB_dbi entries;
	MDB_dbi bytime;
	size_t keymax; /* entries key limit (bytime adds 8) */
	size_t map_pages;
	size_t soft_pages; /* live pages we let records reach */
};

static void
dedup_lmdb_err(struct sbuf *err, const char *what, int rc)
{
	if (err == NULL)
		return;
	sbuf_reset(err);
	/* A cut message is still a message. */
	(void)sbuf_printf(err, "dedup: %s: %s", what, mdb_strerror(rc));
}

static void
dedup_lmdb_errx(struct sbuf *err, const char *what)
{
	if (err == NULL)
		return;
	sbuf_reset(err);
	(void)sbuf_append_str(err, what);
}

static void
dedup_lmdb_put64(unsigned char *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

static uint64_t
dedup_lmdb_get64(const unsigned char *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Negative times sort first in the bytime table. */
static uint64_t
dedup_lmdb_timekey(int64_t t)
{
	return t < 0 ? 0 : (uint64_t)t;
}

static bool
dedup_lmdb_expired(const struct dedup *dd, int64_t first_seen, time_t now)
{
	/* A clock that went backwards makes first_seen > now: still live. */
	return (int64_t)now - first_seen >= (int64_t)dd->window;
}

/* 0, or -1 when the stored value is not ours. */
static int
dedup_lmdb_decode(const MDB_val *v, struct dedup_entry *out)
{
	const unsigned char *p = v->mv_data;
	size_t rlen;

	if (v->mv_size < DEDUP_LMDB_HDR || p[0] != DEDUP_LMDB_VERSION)
		return -1;
	rlen = p[1];
	if (rlen > DEDUP_REPLY_MAX || v->mv_size != DEDUP_LMDB_HDR + rlen)
		return -1;
	memcpy(out->qid, p + 2, DEDUP_QID_LEN);
	out->qid[DEDUP_QID_LEN] = '\0';
	out->first_seen = (time_t)(int64_t)dedup_lmdb_get64(
	    p + 2 + DEDUP_QID_LEN);
	memcpy(out->reply, p + DEDUP_LMDB_HDR, rlen);
	out->reply[rlen] = '\0';
	return 0;
}

static size_t
dedup_lmdb_encode(unsigned char *buf, const char *qid, const char *reply,
    time_t now)
{
	size_t rlen = reply == NULL ? 0 : strlen(reply);

	if (rlen > DEDUP_REPLY_MAX)
		rlen = DEDUP_REPLY_MAX;
	buf[0] = DEDUP_LMDB_VERSION;
	buf[1] = (unsigned char)rlen;
	memcpy(buf + 2, qid, DEDUP_QID_LEN);
	dedup_lmdb_put64(buf + 2 + DEDUP_QID_LEN, (uint64_t)(int64_t)now);
	if (rlen > 0)
		memcpy(buf + DEDUP_LMDB_HDR, reply, rlen);
	return DEDUP_LMDB_HDR + rlen;
}

/* Fills tk with time + key for the bytime table. */
static int
dedup_lmdb_tkey(struct sbuf *tk, int64_t t, const struct sbuf *key)
{
	unsigned char tb[DEDUP_LMDB_TIME];

	dedup_lmdb_put64(tb, dedup_lmdb_timekey(t));
	sbuf_reset(tk);
	if (sbuf_append(tk, tb, sizeof(tb)) == -1 ||
	    sbuf_append(tk, key->data, key->len) == -1)
		return -1;
	return 0;
}

static struct dedup *
dedup_lmdb_open(const struct dedup_conf *conf, struct sbuf *err)
{
	struct dedup_lmdb *dl;
	MDB_envinfo info;
	MDB_stat st;
	MDB_txn *txn;
	size_t pages, reserve;
	int rc, dead;

	if (conf->path == NULL || conf->path[0] == '\0') {
		dedup_lmdb_errx(err, "dedup: no database path");
		return NULL;
	}
	if (mkdir(conf->path, 0700) == -1 && errno != EEXIST) {
		if (err != NULL) {
			sbuf_reset(err);
			(void)sbuf_printf(err, "dedup: mkdir %s: %s",
			    conf->path, strerror(errno));
		}
		return NULL;
	}
	dl = xcalloc(1, sizeof(*dl));
	dl->base.ops = &dedup_lmdb_ops;
	atomic_init(&dl->base.evicted, 0);
	dl->base.window = conf->window > 0 ? conf->window :
	                                     DEDUP_WINDOW_DEFAULT;
	if ((rc = mdb_env_create(&dl->env)) != 0) {
		dedup_lmdb_err(err, "mdb_env_create", rc);
		free(dl);
		return NULL;
	}
	if ((rc = mdb_env_set_maxdbs(dl->env, 2)) != 0) {
		dedup_lmdb_err(err, "mdb_env_set_maxdbs", rc);
		goto fail;
	}
	if ((rc = mdb_env_set_mapsize(dl->env,
	         conf->map_size > 0 ? conf->map_size :
	                              DEDUP_MAP_SIZE_DEFAULT)) != 0) {
		dedup_lmdb_err(err, "mdb_env_set_mapsize", rc);
		goto fail;
	}
	/*
	 * MDB_NOTLS: read transactions belong to the call, not the thread,
	 * so any pooled worker may run any call. Without nosync a commit
	 * is durable when it returns; with it (the daemon: the spool's log
	 * holds every claim) dedup_sync does that at checkpoints.
	 */
	if ((rc = mdb_env_open(dl->env, conf->path,
	         MDB_NOTLS | (conf->nosync ? MDB_NOSYNC : 0), 0600)) != 0) {
		if (err != NULL) {
			sbuf_reset(err);
			(void)sbuf_printf(err, "dedup: mdb_env_open %s: %s",
			    conf->path, mdb_strerror(rc));
		}
		goto fail;
	}
	/* Reader slots of a process killed mid-read would pin old pages. */
	if ((rc = mdb_reader_check(dl->env, &dead)) != 0) {
		dedup_lmdb_err(err, "mdb_reader_check", rc);
		goto fail;
	}
	dl->keymax = (size_t)mdb_env_get_maxkeysize(dl->env) - DEDUP_LMDB_TIME;
	if ((rc = mdb_env_info(dl->env, &info)) != 0 ||
	    (rc = mdb_env_stat(dl->env, &st)) != 0) {
		dedup_lmdb_err(err, "mdb_env_info", rc);
		goto fail;
	}
	pages = info.me_mapsize / st.ms_psize;
	reserve = pages / 16 > DEDUP_LMDB_RESERVE_MIN ? pages / 16 :
	                                                DEDUP_LMDB_RESERVE_MIN;
	if (pages < reserve + DEDUP_LMDB_SOFT_MIN) {
		if (err != NULL) {
			sbuf_reset(err);
			(void)sbuf_printf(err,
			    "dedup: map size %zu too small "
			    "(at least %zu bytes)",
			    info.me_mapsize,
			    (size_t)(reserve + DEDUP_LMDB_SOFT_MIN) *
			        st.ms_psize);
		}
		goto fail;
	}
	dl->map_pages = pages;
	dl->soft_pages = pages - reserve;
	if ((rc = mdb_txn_begin(dl->env, NULL, 0, &txn)) != 0) {
		dedup_lmdb_err(err, "mdb_txn_begin", rc);
		goto fail;
	}
	if ((rc = mdb_dbi_open(txn, "entries", MDB_CREATE, &dl->entries)) !=
	        0 ||
	    (rc = mdb_dbi_open(txn, "bytime", MDB_CREATE, &dl->bytime)) != 0) {
		mdb_txn_abort(txn);
		dedup_lmdb_err(err, "mdb_dbi_open", rc);
		goto fail;
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		dedup_lmdb_err(err, "mdb_txn_commit", rc);
		goto fail;
	}
	return &dl->base;
fail:
	mdb_env_close(dl->env);
	free(dl);
	return NULL;
}

static void
dedup_lmdb_close(struct dedup *dd)
{
	struct dedup_lmdb *dl = (struct dedup_lmdb *)dd;

	/* Closing the environment closes the table handles too. */
	mdb_env_close(dl->env);
	free(dl);
}

static int
dedup_lmdb_lookup(struct dedup *dd, const struct dedup_key *key, time_t now,
    struct dedup_entry *out, struct sbuf *err)
{
	struct dedup_lmdb *dl = (struct dedup_lmdb *)dd;
	struct sbuf kb;
	MDB_txn *txn;
	MDB_val k, v;
	int rc, ret = -1;

	sbuf_init(&kb, DEDUP_LMDB_RAWKEY_MAX);
	if (dedup_key_encode(key, dl->keymax, &kb, err) == -1)
		goto out;
	if ((rc = mdb_txn_begin(dl->env, NULL, MDB_RDONLY, &txn)) != 0) {
		dedup_lmdb_err(err, "mdb_txn_begin", rc);
		goto out;
	}
	k.mv_data = kb.data;
	k.mv_size = kb.len;
	rc = mdb_get(txn, dl->entries, &k, &v);
	if (rc == MDB_NOTFOUND) {
		ret = 0;
	} else if (rc != 0) {
		dedup_lmdb_err(err, "mdb_get", rc);
	} else if (dedup_lmdb_decode(&v, out) == -1) {
		dedup_lmdb_errx(err, "dedup: malformed entry in the index");
	} else {
		ret = dedup_lmdb_expired(dd, (int64_t)out->first_seen, now) ?
		    0 :
		    1;
	}
	/* v points into the map: it was copied out before this. */
	mdb_txn_abort(txn);
out:
	sbuf_release(&kb);
	return ret;
}

/* Pages in use by both tables (O(1): LMDB keeps the counts). */
static int
dedup_lmdb_usage(struct dedup_lmdb *dl, MDB_txn *txn, size_t *pages_out,
    size_t *entries_out, struct sbuf *err)
{
	MDB_stat a, b;
	int rc;

	if ((rc = mdb_stat(txn, dl->entries, &a)) != 0 ||
	    (rc = mdb_stat(txn, dl->bytime, &b)) != 0) {
		dedup_lmdb_err(err, "mdb_stat", rc);
		return -1;
	}
	*pages_out = a.ms_branch_pages + a.ms_leaf_pages + a.ms_overflow_pages +
	    b.ms_branch_pages + b.ms_leaf_pages + b.ms_overflow_pages;
	if (entries_out != NULL)
		*entries_out = a.ms_entries;
	return 0;
}

/*
 * One attempt at a batch in one write transaction. 0, MDB_MAP_FULL (err
 * set, nothing written; *need_out = pages the batch wanted, 0 when the
 * index was already at the soft limit), or -1 (err set, nothing written).
 */
static int
dedup_lmdb_record_txn(struct dedup_lmdb *dl, struct dedup_rec *recs, size_t n,
    time_t now, size_t *need_out, struct sbuf *err)
{
	size_t before, after;
	unsigned char vb[DEDUP_LMDB_HDR + DEDUP_REPLY_MAX];
	struct dedup_entry old;
	struct sbuf kb, tk;
	MDB_txn *txn;
	MDB_val k, v, tkv, empty;
	size_t i;
	int rc, ret = -1;

	sbuf_init(&kb, DEDUP_LMDB_RAWKEY_MAX);
	sbuf_init(&tk, DEDUP_LMDB_RAWKEY_MAX + DEDUP_LMDB_TIME);
	empty.mv_data = NULL;
	empty.mv_size = 0;
	*need_out = 0;
	if ((rc = mdb_txn_begin(dl->env, NULL, 0, &txn)) != 0) {
		dedup_lmdb_err(err, "mdb_txn_begin", rc);
		goto out;
	}
	if (dedup_lmdb_usage(dl, txn, &before, NULL, err) == -1) {
		rc = 0;
		goto abort;
	}
	if (before > dl->soft_pages) {
		rc = MDB_MAP_FULL;
		goto full;
	}
	for (i = 0; i < n; i++) {
		sbuf_reset(&kb);
		if (dedup_key_encode(&recs[i].key, dl->keymax, &kb, err) == -1)
			goto abort;
		k.mv_data = kb.data;
		k.mv_size = kb.len;
		rc = mdb_get(txn, dl->entries, &k, &v);
		if (rc != 0 && rc != MDB_NOTFOUND) {
			dedup_lmdb_err(err, "mdb_get", rc);
			goto abort;
		}
		if (rc == 0) {
			if (dedup_lmdb_decode(&v, &old) == -1) {
				dedup_lmdb_errx(err,
				    "dedup: malformed entry in the index");
				goto abort;
			}
			if (!dedup_lmdb_expired(&dl->base,
			        (int64_t)old.first_seen, now)) {
				recs[i].result = 0; /* first one wins */
				memcpy(recs[i].owner, old.qid,
				    DEDUP_QID_LEN + 1);
				continue;
			}
			/* Past the window: replaced, with its time entry. */
			if (dedup_lmdb_tkey(&tk, (int64_t)old.first_seen,
			        &kb) == -1)
				goto toolong;
			tkv.mv_data = tk.data;
			tkv.mv_size = tk.len;
			rc = mdb_del(txn, dl->bytime, &tkv, NULL);
			if (rc != 0 && rc != MDB_NOTFOUND) {
				dedup_lmdb_err(err, "mdb_del", rc);
				goto abort;
			}
		}
		v.mv_data = vb;
		v.mv_size = dedup_lmdb_encode(vb, recs[i].qid, recs[i].reply,
		    now);
		if ((rc = mdb_put(txn, dl->entries, &k, &v, 0)) != 0) {
			if (rc == MDB_MAP_FULL)
				goto hardfull;
			dedup_lmdb_err(err, "mdb_put", rc);
			goto abort;
		}
		if (dedup_lmdb_tkey(&tk, (int64_t)now, &kb) == -1)
			goto toolong;
		tkv.mv_data = tk.data;
		tkv.mv_size = tk.len;
		if ((rc = mdb_put(txn, dl->bytime, &tkv, &empty, 0)) != 0) {
			if (rc == MDB_MAP_FULL)
				goto hardfull;
			dedup_lmdb_err(err, "mdb_put", rc);
			goto abort;
		}
		recs[i].result = 1;
		memcpy(recs[i].owner, recs[i].qid, DEDUP_QID_LEN);
		recs[i].owner[DEDUP_QID_LEN] = '\0';
	}
	/* Never commit past the soft limit: the reserve stays free. */
	if (dedup_lmdb_usage(dl, txn, &after, NULL, err) == -1) {
		rc = 0;
		goto abort;
	}
	if (after > dl->soft_pages) {
		*need_out = after > before ? after - before : 1;
		rc = MDB_MAP_FULL;
		goto full;
	}
	/* The fsync happens here; on error report it as not recorded. */
	if ((rc = mdb_txn_commit(txn)) != 0) {
		dedup_lmdb_err(err, "mdb_txn_commit", rc);
		ret = rc == MDB_MAP_FULL ? MDB_MAP_FULL : -1;
		if (ret == MDB_MAP_FULL)
			*need_out = dl->map_pages - before;
		goto out;
	}
	ret = 0;
	goto out;
hardfull:
	/*
	 * The batch outgrew the reserve as well: it wanted at least all the
	 * pages not in use when it started.
	 */
	*need_out = dl->map_pages - before;
full:
	dedup_lmdb_errx(err, "dedup: index map full");
	goto abort;
toolong:
	dedup_lmdb_errx(err, "dedup: key too long");
	rc = 0;
abort:
	mdb_txn_abort(txn);
	ret = rc == MDB_MAP_FULL ? MDB_MAP_FULL : -1;
out:
	if (ret != 0)
		for (i = 0; i < n; i++)
			recs[i].result = -1;
	sbuf_release(&tk);
	sbuf_release(&kb);
	return ret;
}

/*
 * Removes entries from the oldest end, in transactions of at most batch
 * entries: only those past the window, or (all_ages) any, up to limit.
 * A batch that itself hits MDB_MAP_FULL (a delete copies pages too) is
 * retried smaller. Adds to *removed; 0 or -1 with err set.
 */
static int
dedup_lmdb_trim(struct dedup_lmdb *dl, bool all_ages, time_t now, size_t limit,
    size_t *removed, struct sbuf *err)
{
	struct dedup_entry ent;
	size_t batch = DEDUP_EXPIRE_BATCH, done;
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val tk, k, v;
	bool finished = false;
	int rc;

	while (!finished && limit > 0) {
		if ((rc = mdb_txn_begin(dl->env, NULL, 0, &txn)) != 0) {
			dedup_lmdb_err(err, "mdb_txn_begin", rc);
			return -1;
		}
		if ((rc = mdb_cursor_open(txn, dl->bytime, &cur)) != 0) {
			mdb_txn_abort(txn);
			dedup_lmdb_err(err, "mdb_cursor_open", rc);
			return -1;
		}
		for (done = 0; done < batch && done < limit; done++) {
			int64_t t;

			/* The first entry is always the one to look at. */
			rc = mdb_cursor_get(cur, &tk, &v, MDB_FIRST);
			if (rc == MDB_NOTFOUND) {
				finished = true;
				break;
			}
			if (rc != 0)
				goto fail;
			if (tk.mv_size <= DEDUP_LMDB_TIME) {
				dedup_lmdb_errx(err,
				    "dedup: malformed time entry in the index");
				rc = 0;
				goto fail;
			}
			t = (int64_t)dedup_lmdb_get64(tk.mv_data);
			if (!all_ages &&
			    !dedup_lmdb_expired(&dl->base, t, now)) {
				finished = true;
				break;
			}
			k.mv_data = (unsigned char *)tk.mv_data +
			    DEDUP_LMDB_TIME;
			k.mv_size = tk.mv_size - DEDUP_LMDB_TIME;
			/*
			 * Delete the entry only when it is the one this time
			 * entry stands for; record keeps them in step, this
			 * is belt and braces.
			 */
			rc = mdb_get(txn, dl->entries, &k, &v);
			if (rc == 0 && dedup_lmdb_decode(&v, &ent) == 0 &&
			    dedup_lmdb_timekey((int64_t)ent.first_seen) !=
			        (uint64_t)t)
				rc = MDB_NOTFOUND;
			if (rc == 0)
				rc = mdb_del(txn, dl->entries, &k, NULL);
			if (rc != 0 && rc != MDB_NOTFOUND)
				goto fail;
			if ((rc = mdb_cursor_del(cur, 0)) != 0)
				goto fail;
		}
		mdb_cursor_close(cur);
		if ((rc = mdb_txn_commit(txn)) != 0) {
			if (rc == MDB_MAP_FULL && batch > 1) {
				batch /= 2;
				finished = false;
				continue;
			}
			dedup_lmdb_err(err, "mdb_txn_commit", rc);
			return -1;
		}
		*removed += done;
		limit -= done;
		if (done < batch)
			finished = true;
		continue;
fail:
		mdb_cursor_close(cur);
		mdb_txn_abort(txn);
		if (rc == MDB_MAP_FULL && batch > 1) {
			batch /= 2;
			finished = false;
			continue;
		}
		if (rc != 0)
			dedup_lmdb_err(err, "expire", rc);
		return -1;
	}
	return 0;
}

/*
 * The index reached its soft limit: entries past the window go first,
 * then the oldest live ones, until the batch fits with 1/16 of the limit
 * to spare (so the next records do not evict again at once). The number
 * to evict is estimated from pages per entry and refined a few times.
 */
static int
dedup_lmdb_make_room(struct dedup_lmdb *dl, size_t need, time_t now,
    struct sbuf *err)
{
	size_t removed = 0, evicted = 0, live, entries, target, evict;
	MDB_txn *txn;
	int rc, round;

	if (dedup_lmdb_trim(dl, false, now, SIZE_MAX, &removed, err) == -1)
		return -1;
	if (need + dl->soft_pages / 16 >= dl->soft_pages) {
		/* Evicting everything would not make room: don't. */
		dedup_lmdb_errx(err, "dedup: batch larger than the index map");
		return -1;
	}
	target = dl->soft_pages - need - dl->soft_pages / 16;
	for (round = 0; round < DEDUP_LMDB_ROUNDS; round++) {
		if ((rc = mdb_txn_begin(dl->env, NULL, MDB_RDONLY, &txn)) !=
		    0) {
			dedup_lmdb_err(err, "mdb_txn_begin", rc);
			return -1;
		}
		rc = dedup_lmdb_usage(dl, txn, &live, &entries, err);
		mdb_txn_abort(txn);
		if (rc == -1)
			return -1;
		if (live <= target || entries == 0)
			break;
		evict = entries / live * (live - target) +
		    entries % live * (live - target) / live + 1;
		removed = 0;
		if (dedup_lmdb_trim(dl, true, now, evict, &removed, err) == -1)
			return -1;
		evicted += removed;
	}
	/* The caller sees it through dedup_evicted() and logs. */
	atomic_fetch_add(&dl->base.evicted, (unsigned long long)evicted);
	return 0;
}

static int
dedup_lmdb_record(struct dedup *dd, struct dedup_rec *recs, size_t n,
    time_t now, struct sbuf *err)
{
	struct dedup_lmdb *dl = (struct dedup_lmdb *)dd;
	size_t need;
	int rc;

	rc = dedup_lmdb_record_txn(dl, recs, n, now, &need, err);
	if (rc != MDB_MAP_FULL)
		return rc;
	if (dedup_lmdb_make_room(dl, need, now, err) == -1)
		return -1;
	rc = dedup_lmdb_record_txn(dl, recs, n, now, &need, err);
	if (rc == MDB_MAP_FULL) {
		dedup_lmdb_errx(err,
		    "dedup: index map full even after "
		    "eviction; raise the map size");
		return -1;
	}
	return rc;
}

static int
dedup_lmdb_expire(struct dedup *dd, time_t now, size_t *removed_out,
    struct sbuf *err)
{
	*removed_out = 0;
	return dedup_lmdb_trim((struct dedup_lmdb *)dd, false, now, SIZE_MAX,
	    removed_out, err);
}

/* Compare-and-delete in one write transaction (its commit fsyncs). */
static int
dedup_lmdb_release(struct dedup *dd, const struct dedup_key *key,
    const char *qid, struct sbuf *err)
{
	struct dedup_lmdb *dl = (struct dedup_lmdb *)dd;
	struct dedup_entry old;
	struct sbuf kb, tk;
	MDB_txn *txn;
	MDB_val k, v, tkv;
	int rc, ret = -1;

	sbuf_init(&kb, DEDUP_LMDB_RAWKEY_MAX);
	sbuf_init(&tk, DEDUP_LMDB_RAWKEY_MAX + DEDUP_LMDB_TIME);
	if (dedup_key_encode(key, dl->keymax, &kb, err) == -1)
		goto out;
	if ((rc = mdb_txn_begin(dl->env, NULL, 0, &txn)) != 0) {
		dedup_lmdb_err(err, "mdb_txn_begin", rc);
		goto out;
	}
	k.mv_data = kb.data;
	k.mv_size = kb.len;
	rc = mdb_get(txn, dl->entries, &k, &v);
	if (rc == MDB_NOTFOUND) {
		ret = 0;
		goto abort;
	}
	if (rc != 0) {
		dedup_lmdb_err(err, "mdb_get", rc);
		goto abort;
	}
	if (dedup_lmdb_decode(&v, &old) == -1) {
		dedup_lmdb_errx(err, "dedup: malformed entry in the index");
		goto abort;
	}
	if (strcmp(old.qid, qid) != 0) {
		ret = 0; /* another copy holds it */
		goto abort;
	}
	if (dedup_lmdb_tkey(&tk, (int64_t)old.first_seen, &kb) == -1) {
		dedup_lmdb_errx(err, "dedup: key too long");
		goto abort;
	}
	tkv.mv_data = tk.data;
	tkv.mv_size = tk.len;
	if (((rc = mdb_del(txn, dl->entries, &k, NULL)) != 0) ||
	    ((rc = mdb_del(txn, dl->bytime, &tkv, NULL)) != 0 &&
	        rc != MDB_NOTFOUND)) {
		dedup_lmdb_err(err, "mdb_del", rc);
		goto abort;
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		dedup_lmdb_err(err, "mdb_txn_commit", rc);
		goto out;
	}
	ret = 1;
	goto out;
abort:
	mdb_txn_abort(txn);
out:
	sbuf_release(&tk);
	sbuf_release(&kb);
	return ret;
}

/*
 * Holding the writer lock: a commit racing the flush could otherwise
 * leave a meta page on disk whose pages are not (LMDB's no-sync caveat).
 */
static int
dedup_lmdb_sync(struct dedup *dd, struct sbuf *err)
{
	struct dedup_lmdb *dl = (struct dedup_lmdb *)dd;
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(dl->env, NULL, 0, &txn)) != 0) {
		dedup_lmdb_err(err, "mdb_txn_begin", rc);
		return -1;
	}
	rc = mdb_env_sync(dl->env, 1);
	mdb_txn_abort(txn);
	if (rc != 0) {
		dedup_lmdb_err(err, "mdb_env_sync", rc);
		return -1;
	}
	return 0;
}

const struct dedup_ops dedup_lmdb_ops = {
	.name = "lmdb",
	.open = dedup_lmdb_open,
	.lookup = dedup_lmdb_lookup,
	.record = dedup_lmdb_record,
	.expire = dedup_lmdb_expire,
	.release = dedup_lmdb_release,
	.sync = dedup_lmdb_sync,
	.close = dedup_lmdb_close,
};
