/*
 * priv.c - privilege drop (startup only, may block).
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "priv.h"

int
priv_lookup(const char *user, uid_t *uid_out, gid_t *gid_out, struct sbuf *err)
{
	struct passwd *pw;

	errno = 0;
	pw = getpwnam(user);
	if (pw == NULL) {
		(void)sbuf_printf(err, "unknown user '%s'", user);
		return -1;
	}
	*uid_out = pw->pw_uid;
	*gid_out = pw->pw_gid;
	return 0;
}

static int
priv_chown_dir(int dfd, const char *name, uid_t uid, gid_t gid, int depth,
    struct sbuf *err)
{
	struct dirent *de;
	DIR *d;
	int fd;

	fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1) {
		(void)sbuf_printf(err, "open %s: %s", name, strerror(errno));
		return -1;
	}
	if (fchown(fd, uid, gid) == -1) {
		(void)sbuf_printf(err, "chown %s: %s", name, strerror(errno));
		(void)close(fd);
		return -1;
	}
	if (depth == 0) {
		if (close(fd) == -1)
			return -1;
		return 0;
	}
	d = fdopendir(fd);
	if (d == NULL) {
		(void)close(fd);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (de->d_type == DT_DIR) {
			if (priv_chown_dir(dirfd(d), de->d_name, uid, gid,
			        depth - 1, err) == -1) {
				(void)closedir(d);
				return -1;
			}
		} else if (fchownat(dirfd(d), de->d_name, uid, gid,
		               AT_SYMLINK_NOFOLLOW) == -1) {
			(void)sbuf_printf(err, "chown %s: %s", de->d_name,
			    strerror(errno));
			(void)closedir(d);
			return -1;
		}
	}
	return closedir(d);
}

int
priv_chown_spool(const char *dir, uid_t uid, gid_t gid, struct sbuf *err)
{
	return priv_chown_dir(AT_FDCWD, dir, uid, gid, 2, err);
}

int
priv_drop(uid_t uid, gid_t gid, struct sbuf *err)
{
	if (setgroups(1, &gid) == -1) {
		(void)sbuf_printf(err, "setgroups: %s", strerror(errno));
		return -1;
	}
	if (setresgid(gid, gid, gid) == -1) {
		(void)sbuf_printf(err, "setresgid: %s", strerror(errno));
		return -1;
	}
	if (setresuid(uid, uid, uid) == -1) {
		(void)sbuf_printf(err, "setresuid: %s", strerror(errno));
		return -1;
	}
	if (uid != 0 && setuid(0) != -1) {
		(void)sbuf_printf(err, "could regain root after dropping it");
		return -1;
	}
	return 0;
}
