/*
 * testpeer.h - helpers the Check suites share to run real peers (dnsmasq,
 * aiosmtpd, smtp-sink) as child processes on loopback and stop them by PID.
 */
#ifndef SPLITMX_TESTPEER_H
#define SPLITMX_TESTPEER_H

#include <sys/types.h>

/* A port on 127.0.0.1 that was free a moment ago (SOCK_STREAM/DGRAM). */
int testpeer_free_port(int type);

/* Forks and execs argv (argv[0] from PATH) with stdout/stderr to logfile. */
pid_t testpeer_spawn(const char *const argv[], const char *logfile);

/* SIGTERM, up to 3 s, then SIGKILL; always reaps. pid <= 0 is ignored. */
void testpeer_stop(pid_t pid);

/* A child that answers every DNS query on 127.0.0.1:port with SERVFAIL. */
pid_t testpeer_servfail(int port);

/* Waits (up to 10 s) until something accepts on 127.0.0.1:port. */
void testpeer_wait_tcp(int port);

#endif
