/*
 * testpeer.c - child-process peers for the Check suites (see testpeer.h).
 * Failures abort the test through Check's assertions.
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <check.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testpeer.h"

static void
testpeer_loopback(struct sockaddr_in *sin, int port)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

int
testpeer_free_port(int type)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd, port;

	fd = socket(AF_INET, type, 0);
	ck_assert_int_ge(fd, 0);
	testpeer_loopback(&sin, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

pid_t
testpeer_spawn(const char *const argv[], const char *logfile)
{
	pid_t pid = fork();
	char *av[64];
	int fd, i;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		/* Check's SIGTERM handler would kill the whole group. */
		signal(SIGTERM, SIG_DFL);
		for (i = 0; i < 63 && argv[i] != NULL; i++)
			av[i] = strdup(argv[i]); /* exec wants char * */
		av[i] = NULL;
		execvp(av[0], av);
		_exit(127);
	}
	return pid;
}

void
testpeer_stop(pid_t pid)
{
	int i, st;

	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	for (i = 0; i < 300; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}

pid_t
testpeer_servfail(int port)
{
	struct sockaddr_in sin, from;
	unsigned char buf[1500];
	socklen_t flen;
	ssize_t n;
	pid_t pid;
	int fd;

	fd = socket(AF_INET, SOCK_DGRAM, 0);
	ck_assert_int_ge(fd, 0);
	testpeer_loopback(&sin, port);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid > 0) {
		close(fd);
		return pid;
	}
	signal(SIGTERM, SIG_DFL);
	for (;;) {
		flen = sizeof(from);
		n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from,
		    &flen);
		if (n < 12)
			continue;
		/* QR, keep RD; RA and rcode SERVFAIL; no records. */
		buf[2] = (unsigned char)(0x80 | (buf[2] & 0x01));
		buf[3] = 0x80 | 2;
		memset(buf + 6, 0, 6);
		(void)sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from,
		    flen);
	}
}

void
testpeer_wait_tcp(int port)
{
	struct sockaddr_in sin;
	int i, fd;

	testpeer_loopback(&sin, port);
	for (i = 0; i < 1000; i++) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0) {
			close(fd);
			return;
		}
		close(fd);
		usleep(10000);
	}
	ck_abort_msg("nothing listens on port %d", port);
}
