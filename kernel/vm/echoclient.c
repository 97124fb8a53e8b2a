// SPDX-License-Identifier: GPL-2.0
/*
 * echoclient: the VM harness's small test client for fastecho.ko, built
 * with gcc -static so it runs in a bare busybox initramfs.
 *
 *   echoclient echo HOST PORT SIZE
 *       one connection: SIZE bytes (NUL bytes included) echoed byte-exact,
 *       then a half-close that must be answered by EOF
 *   echoclient conc HOST PORT N SIZE TIMEOUT
 *       N connections at once, each echoing its own SIZE-byte pattern
 *   echoclient hold HOST PORT N READYFILE TIMEOUT
 *       open N connections, echo one byte on each, create READYFILE, then
 *       wait until the server has closed every one of them (a connection
 *       still open after PROBE_AFTER seconds is sent one byte: a socket the
 *       server has closed answers with a reset, a live one would echo it)
 *   echoclient busy HOST PORT N READYFILE TIMEOUT
 *       open N connections that keep sending (every other one also reads
 *       and checks the echo, the rest never read), create READYFILE once
 *       data flows on all of them, then keep going until the server has
 *       closed every one of them (for rmmod under load)
 *   echoclient burst HOST PORT N ROUNDS TIMEOUT
 *       kecho's bench, as a burst: each round opens N connections at once,
 *       each sends "dummy message", reads its 13 bytes back and closes;
 *       ROUNDS rounds, TIMEOUT seconds per round
 *   echoclient tburst HOST PORT N ROUNDS
 *       the same with one thread per connection, exactly as kecho's bench
 *       does it (blocking connect, send, one recv, shutdown, close)
 *   echoclient idle HOST PORT N READYFILE TIMEOUT
 *       open N connections that never send; after they connected and a
 *       second passed, print how many the server closed ("refused"), create
 *       READYFILE and wait for TIMEOUT seconds or a signal
 *   echoclient noread HOST PORT N READYFILE TIMEOUT
 *       N connections that send as fast as they can and never read; once no
 *       connection could send for 2 s, print the bytes sent, create
 *       READYFILE, wait 2 s more, print whether anything moved, and hold
 *       the connections until TIMEOUT seconds or a signal
 *   echoclient stuck HOST PORT SIZE TIMEOUT
 *       one connection with a tiny receive buffer: send SIZE bytes, shut
 *       down writing and never read, so the server's echo and FIN cannot
 *       be delivered; print how long until the server resets it
 *   echoclient listen HOST PORT READYFILE
 *       listen on HOST:PORT (to occupy the port), create READYFILE, sleep
 *   echoclient load MODULE [PARAMS...]
 *       finit_module(2) with PARAMS; prints "load: ok" or "load: errno=NAME"
 *
 * Exit status 0 means the check passed; a line starting with "echoclient:"
 * says what went wrong.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("echoclient: ", stdout);
	vprintf(fmt, ap);
	putchar('\n');
	va_end(ap);
	exit(1);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Create (or empty) the file @path: the shell waits for it to appear. */
static void touch(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	close(fd);
}

/* poll(2) that only returns when it worked. */
static void poll_or_die(struct pollfd *pfd, unsigned int n, int ms)
{
	if (poll(pfd, n, ms) < 0)
		die("poll: %s", strerror(errno));
}

/*
 * Step *@i to the next of the @n entries of @pfd that is open (fd >= 0) and
 * that poll() reported (revents set), *@i itself included; returns 0 once
 * there is none left. Walks the ready entries after a poll:
 *
 *	for (i = 0; next_ready(pfd, n, &i); i++)
 */
static int next_ready(const struct pollfd *pfd, unsigned int n, unsigned int *i)
{
	for (; *i < n; (*i)++)
		if (pfd[*i].fd >= 0 && pfd[*i].revents)
			return 1;
	return 0;
}

/* Byte i of connection k: varied, with a NUL every 7 bytes. */
static uint8_t pattern(unsigned int k, size_t i)
{
	if (i % 7 == 3)
		return 0;
	return (uint8_t)(i * 131 + k * 29 + (i >> 9));
}

static void raise_nofile(unsigned int n)
{
	struct rlimit rl = { n + 64, n + 64 };

	if (setrlimit(RLIMIT_NOFILE, &rl))
		die("setrlimit(%u): %s", n + 64, strerror(errno));
}

static struct sockaddr_storage target;
static socklen_t target_len;

static void resolve(const char *host, const char *port)
{
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&target;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&target;
	int p = atoi(port);

	memset(&target, 0, sizeof(target));
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(p);
		target_len = sizeof(*s4);
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(p);
		target_len = sizeof(*s6);
	} else {
		die("bad address %s", host);
	}
}

static int connect_nb(void)
{
	int fd = socket(target.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);

	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&target, target_len) &&
	    errno != EINPROGRESS)
		die("connect: %s", strerror(errno));
	return fd;
}

struct conn {
	int fd;
	size_t sent, got;
	int done;
};

/*
 * Drive @n connections that each echo @size bytes of their own pattern.
 * Returns the number that finished byte-exact; reports the first failure.
 */
static int run_echo(struct conn *c, unsigned int n, size_t size, double deadline)
{
	struct pollfd *pfd = calloc(n, sizeof(*pfd));
	unsigned int i, left = n, ok = 0;
	uint8_t buf[65536];

	if (!pfd)
		die("out of memory");
	while (left) {
		int timeout = (int)((deadline - now()) * 1000);

		if (timeout <= 0) {
			printf("echoclient: timeout with %u of %u unfinished\n", left, n);
			break;
		}
		for (i = 0; i < n; i++) {
			pfd[i].fd = c[i].done ? -1 : c[i].fd;
			pfd[i].events = POLLIN | (c[i].sent < size ? POLLOUT : 0);
			pfd[i].revents = 0;
		}
		poll_or_die(pfd, n, timeout > 1000 ? 1000 : timeout);
		/* A connection that is done was polled as fd -1. */
		for (i = 0; next_ready(pfd, n, &i); i++) {
			struct conn *k = &c[i];
			ssize_t r;
			size_t j;

			if ((pfd[i].revents & POLLOUT) && k->sent < size) {
				size_t len = size - k->sent;

				if (len > sizeof(buf))
					len = sizeof(buf);
				for (j = 0; j < len; j++)
					buf[j] = pattern(i, k->sent + j);
				r = send(k->fd, buf, len, MSG_NOSIGNAL);
				if (r > 0)
					k->sent += r;
				else if (r < 0 && errno != EAGAIN)
					goto fail;
			}
			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
				r = recv(k->fd, buf, sizeof(buf), 0);
				if (r < 0 && errno == EAGAIN)
					continue;
				if (r == 0)
					errno = 0;
				if (r <= 0)
					goto fail;
				for (j = 0; j < (size_t)r; j++) {
					if (buf[j] != pattern(i, k->got + j)) {
						printf("echoclient: conn %u: byte %zu is %u, want %u\n",
						       i, k->got + j, buf[j],
						       pattern(i, k->got + j));
						k->done = 1;
						left--;
						goto next;
					}
				}
				k->got += r;
				if (k->got > size) {
					printf("echoclient: conn %u: %zu bytes echoed, sent %zu\n",
					       i, k->got, size);
					k->done = 1;
					left--;
				} else if (k->got == size) {
					k->done = 1;
					left--;
					ok++;
				}
			}
			continue;
fail:
			printf("echoclient: conn %u: %s after %zu sent, %zu echoed\n",
			       i, errno ? strerror(errno) : "EOF", k->sent, k->got);
			k->done = 1;
			left--;
next:
			;
		}
	}
	free(pfd);
	return ok;
}

static int cmd_conc(char **av, unsigned int n, size_t size, int timeout)
{
	struct conn *c = calloc(n, sizeof(*c));
	double t0 = now();
	unsigned int i;
	int ok;

	if (!c)
		die("out of memory");
	raise_nofile(n);
	resolve(av[0], av[1]);
	for (i = 0; i < n; i++)
		c[i].fd = connect_nb();
	ok = run_echo(c, n, size, t0 + timeout);
	for (i = 0; i < n; i++)
		close(c[i].fd);
	printf("conc: %d of %u connections echoed %zu bytes byte-exact in %.2f s\n",
	       ok, n, size, now() - t0);
	return ok == (int)n ? 0 : 1;
}

static int cmd_echo(char **av, size_t size)
{
	struct conn c = { 0 };
	uint8_t b;
	ssize_t r;
	int flags;

	resolve(av[0], av[1]);
	c.fd = connect_nb();
	if (run_echo(&c, 1, size, now() + 20) != 1)
		return 1;
	/* Half-close: the server must finish and answer with EOF. */
	if (shutdown(c.fd, SHUT_WR))
		die("shutdown: %s", strerror(errno));
	flags = fcntl(c.fd, F_GETFL);
	fcntl(c.fd, F_SETFL, flags & ~O_NONBLOCK);
	r = recv(c.fd, &b, 1, 0);
	if (r != 0)
		die("expected EOF after half-close, got %zd (%s)", r,
		    r < 0 ? strerror(errno) : "data");
	close(c.fd);
	printf("echo: %zu bytes byte-exact, EOF after half-close\n", size);
	return 0;
}

/*
 * Seconds after which hold probes the connections not yet seen closed. When
 * rmmod closes thousands of sockets at once, their FINs can overflow
 * loopback's backlog queue (netdev_max_backlog) on a slow guest; the orphaned
 * sockets may then be reset under orphan or memory pressure, and a dropped
 * RST is never sent again. The client would wait forever on a socket that
 * no longer exists, so it asks: data sent to a closed socket draws a reset.
 */
#define PROBE_AFTER 10

static int cmd_hold(char **av, unsigned int n, const char *ready, int timeout)
{
	struct conn *c = calloc(n, sizeof(*c));
	struct pollfd *pfd = calloc(n, sizeof(*pfd));
	unsigned int i, open_left = n, closed = 0, probed = 0;
	double t0 = now();
	int ok;

	if (!c || !pfd)
		die("out of memory");
	raise_nofile(n);
	resolve(av[0], av[1]);
	for (i = 0; i < n; i++)
		c[i].fd = connect_nb();
	ok = run_echo(c, n, 1, t0 + timeout);
	if (ok != (int)n)
		die("hold: only %d of %u connections echoed", ok, n);
	printf("hold: %u connections open and echoing\n", n);
	fflush(stdout);
	touch(ready);

	/* Every connection must now see EOF or a reset from the server. */
	t0 = now();
	for (i = 0; i < n; i++) {
		pfd[i].fd = c[i].fd;
		pfd[i].events = POLLIN;
	}
	while (open_left && now() - t0 < timeout) {
		if (!probed && now() - t0 >= PROBE_AFTER) {
			for (i = 0; i < n; i++) {
				if (pfd[i].fd < 0)
					continue;
				send(pfd[i].fd, "p", 1, MSG_NOSIGNAL);
				probed++;
			}
		}
		poll_or_die(pfd, n, 1000);
		for (i = 0; next_ready(pfd, n, &i); i++) {
			uint8_t buf[64];
			ssize_t r;

			r = recv(pfd[i].fd, buf, sizeof(buf), 0);
			if (r > 0)
				die("hold: conn %u: unexpected data", i);
			if (r < 0 && errno == EAGAIN)
				continue;
			close(pfd[i].fd);
			pfd[i].fd = -1;
			open_left--;
			closed++;
		}
	}
	printf("hold: %u of %u connections closed by the server in %.2f s",
	       closed, n, now() - t0);
	if (probed && now() - t0 >= PROBE_AFTER)
		printf(" (%u still open after %d s were probed)", probed, PROBE_AFTER);
	putchar('\n');
	return open_left ? 1 : 0;
}

static int cmd_busy(char **av, unsigned int n, const char *ready, int timeout)
{
	struct conn *c = calloc(n, sizeof(*c));
	struct pollfd *pfd = calloc(n, sizeof(*pfd));
	unsigned int i, left = n, flowing = 0, bad = 0;
	double t0 = now(), tready = 0;
	uint8_t buf[16384];
	size_t j;

	if (!c || !pfd)
		die("out of memory");
	raise_nofile(n);
	resolve(av[0], av[1]);
	for (i = 0; i < n; i++) {
		c[i].fd = connect_nb();
		pfd[i].fd = c[i].fd;
	}
	while (left && now() - t0 < timeout) {
		for (i = 0; i < n; i++)
			pfd[i].events = (i % 2 ? 0 : POLLIN) | POLLOUT;
		poll_or_die(pfd, n, 1000);
		for (i = 0; next_ready(pfd, n, &i); i++) {
			struct conn *k = &c[i];
			ssize_t r;

			if (pfd[i].revents & POLLOUT) {
				for (j = 0; j < sizeof(buf); j++)
					buf[j] = pattern(i, k->sent + j);
				r = send(k->fd, buf, sizeof(buf), MSG_NOSIGNAL);
				if (r > 0) {
					if (!k->sent && i % 2)
						flowing++;
					k->sent += r;
				} else if (r < 0 && errno != EAGAIN) {
					goto closed;
				}
			}
			if (i % 2 == 0 &&
			    (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) {
				r = recv(k->fd, buf, sizeof(buf), 0);
				if (r < 0 && errno == EAGAIN)
					continue;
				if (r <= 0)
					goto closed;
				for (j = 0; j < (size_t)r; j++)
					if (buf[j] != pattern(i, k->got + j))
						break;
				if (j < (size_t)r) {
					printf("echoclient: conn %u: wrong byte at %zu\n",
					       i, k->got + j);
					bad++;
					goto closed;
				}
				if (!k->got)
					flowing++;
				k->got += r;
			} else if (i % 2 && (pfd[i].revents & (POLLHUP | POLLERR))) {
				goto closed;
			}
			continue;
closed:
			if (!tready)
				die("busy: conn %u closed before the test was ready", i);
			close(k->fd);
			pfd[i].fd = -1;
			left--;
		}
		if (!tready && flowing == n) {
			tready = now();
			printf("busy: %u connections moving data\n", n);
			touch(ready);
		}
	}
	if (!tready)
		die("busy: only %u of %u connections got data moving", flowing, n);
	printf("busy: %u of %u connections closed by the server in %.2f s, %u bad echoes\n",
	       n - left, n, now() - tready, bad);
	return left || bad ? 1 : 0;
}

static const char burst_msg[] = "dummy message";

static int cmd_burst(char **av, unsigned int n, unsigned int rounds, int timeout)
{
	struct pollfd *pfd = calloc(n, sizeof(*pfd));
	size_t *got = calloc(n, sizeof(*got));
	unsigned int r, i, ok = 0, bad = 0;
	size_t len = sizeof(burst_msg) - 1;
	double t0 = now();

	if (!pfd || !got)
		die("out of memory");
	raise_nofile(n);
	resolve(av[0], av[1]);
	for (r = 0; r < rounds; r++) {
		double deadline = now() + timeout;
		unsigned int left = n;

		for (i = 0; i < n; i++) {
			pfd[i].fd = connect_nb();
			pfd[i].events = POLLOUT;
			got[i] = 0;
		}
		while (left && now() < deadline) {
			poll_or_die(pfd, n, 1000);
			for (i = 0; next_ready(pfd, n, &i); i++) {
				char buf[64];
				ssize_t k;

				if (pfd[i].events == POLLOUT) {
					k = send(pfd[i].fd, burst_msg, len, MSG_NOSIGNAL);
					if (k == (ssize_t)len) {
						pfd[i].events = POLLIN;
						continue;
					}
					if (k < 0 && (errno == EAGAIN || errno == EINPROGRESS))
						continue;
					goto done;
				}
				k = recv(pfd[i].fd, buf, sizeof(buf), 0);
				if (k < 0 && errno == EAGAIN)
					continue;
				if (k > 0 && got[i] + k <= len &&
				    !memcmp(buf, burst_msg + got[i], k)) {
					got[i] += k;
					if (got[i] < len)
						continue;
					ok++;
				} else {
					bad++;
				}
done:
				close(pfd[i].fd);
				pfd[i].fd = -1;
				left--;
			}
		}
		for (i = 0; i < n; i++) {
			if (pfd[i].fd >= 0) {
				close(pfd[i].fd);
				bad++;
			}
		}
	}
	printf("burst: %u rounds x %u connections: %u echoed \"%s\" and closed, %u failed, %.2f s\n",
	       rounds, n, ok, burst_msg, bad, now() - t0);
	return bad ? 1 : 0;
}

/*
 * kecho's bench itself: one thread per connection, all released at once;
 * each does a blocking connect, send, one recv, shutdown(SHUT_RDWR), close.
 */
static pthread_mutex_t tb_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tb_go = PTHREAD_COND_INITIALIZER;
static int tb_ready;
static unsigned int tb_ok, tb_bad;

static void *tburst_worker(void *arg)
{
	size_t len = sizeof(burst_msg) - 1;
	char buf[32];
	ssize_t k;
	int fd;

	(void)arg;
	pthread_mutex_lock(&tb_lock);
	while (!tb_ready)
		pthread_cond_wait(&tb_go, &tb_lock);
	pthread_mutex_unlock(&tb_lock);
	fd = socket(target.ss_family, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&target, target_len)) {
		k = -1;
	} else {
		send(fd, burst_msg, len, MSG_NOSIGNAL);
		k = recv(fd, buf, sizeof(buf), 0);
		shutdown(fd, SHUT_RDWR);
	}
	if (fd >= 0)
		close(fd);
	pthread_mutex_lock(&tb_lock);
	if (k == (ssize_t)len && !memcmp(buf, burst_msg, len))
		tb_ok++;
	else
		tb_bad++;
	pthread_mutex_unlock(&tb_lock);
	return NULL;
}

static int cmd_tburst(char **av, unsigned int n, unsigned int rounds)
{
	pthread_t *pt = calloc(n, sizeof(*pt));
	double t0 = now();
	pthread_attr_t attr;
	unsigned int r, i;

	if (!pt)
		die("out of memory");
	raise_nofile(n);
	resolve(av[0], av[1]);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	for (r = 0; r < rounds; r++) {
		tb_ready = 0;
		for (i = 0; i < n; i++)
			if (pthread_create(&pt[i], &attr, tburst_worker, NULL))
				die("pthread_create: thread %u", i);
		pthread_mutex_lock(&tb_lock);
		tb_ready = 1;
		pthread_cond_broadcast(&tb_go);
		pthread_mutex_unlock(&tb_lock);
		for (i = 0; i < n; i++)
			pthread_join(pt[i], NULL);
	}
	printf("tburst: %u rounds x %u threads: %u echoed \"%s\", %u failed, %.2f s\n",
	       rounds, n, tb_ok, burst_msg, tb_bad, now() - t0);
	return tb_bad ? 1 : 0;
}

/* Connect N sockets; returns how many connected within @timeout seconds. */
static unsigned int connect_all(struct pollfd *pfd, unsigned int n, int timeout)
{
	double deadline = now() + timeout;
	unsigned int i, pending = n, up = 0;

	for (i = 0; i < n; i++) {
		pfd[i].fd = connect_nb();
		pfd[i].events = POLLOUT;
	}
	while (pending && now() < deadline) {
		poll_or_die(pfd, n, 1000);
		for (i = 0; i < n; i++) {
			int err = 0;
			socklen_t l = sizeof(err);

			if (!pfd[i].events || !pfd[i].revents)
				continue;
			pfd[i].events = 0;
			pending--;
			getsockopt(pfd[i].fd, SOL_SOCKET, SO_ERROR, &err, &l);
			if (!err)
				up++;
		}
	}
	return up;
}

static int cmd_idle(char **av, unsigned int n, const char *ready, int timeout)
{
	struct pollfd *pfd = calloc(n, sizeof(*pfd));
	unsigned int i, closed = 0;
	double t0 = now();

	if (!pfd)
		die("out of memory");
	raise_nofile(n);
	resolve(av[0], av[1]);
	/* A refused one may be reset before its connect is seen to finish. */
	connect_all(pfd, n, timeout);
	sleep(1);
	for (i = 0; i < n; i++)
		pfd[i].events = POLLIN;
	poll_or_die(pfd, n, 0);
	for (i = 0; i < n; i++) {
		char b;

		errno = 0;
		if (pfd[i].revents &&
		    recv(pfd[i].fd, &b, 1, MSG_DONTWAIT) <= 0 && errno != EAGAIN)
			closed++;
	}
	printf("idle: %u connections, %u closed by the server (refused), %u open\n",
	       n, closed, n - closed);
	touch(ready);
	while (now() - t0 < timeout)
		sleep(1);
	return 0;
}

static int cmd_noread(char **av, unsigned int n, const char *ready, int timeout)
{
	struct pollfd *pfd = calloc(n, sizeof(*pfd));
	unsigned long long total = 0, max = 0, before;
	size_t *sent = calloc(n, sizeof(*sent));
	static uint8_t buf[65536];
	double t0 = now(), last = now();
	unsigned int i, up;

	if (!pfd || !sent)
		die("out of memory");
	raise_nofile(n);
	resolve(av[0], av[1]);
	memset(buf, 0xa5, sizeof(buf));
	up = connect_all(pfd, n, timeout);
	if (up != n)
		die("noread: only %u of %u connected", up, n);
	/* Send until no connection has been able to send for 2 s. */
	for (;;) {
		double stall = 2;

		if (now() - t0 > timeout)
			die("noread: still sending after %d s: %llu B sent", timeout, total);
		if (now() - last >= stall)
			break;
		for (i = 0; i < n; i++)
			pfd[i].events = POLLOUT;
		poll_or_die(pfd, n, 200);
		for (i = 0; i < n; i++) {
			ssize_t k;

			if (!(pfd[i].revents & POLLOUT))
				continue;
			k = send(pfd[i].fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
			if (k > 0) {
				sent[i] += k;
				total += k;
				last = now();
			} else if (k < 0 && errno != EAGAIN) {
				die("noread: conn %u: %s after %zu B", i, strerror(errno), sent[i]);
			}
		}
	}
	for (i = 0; i < n; i++)
		if (sent[i] > max)
			max = sent[i];
	printf("noread: %u connections stalled after %llu B sent (%llu B per connection, at most %llu)\n",
	       n, total, total / n, max);
	touch(ready);
	before = total;
	sleep(2);
	for (i = 0; i < n; i++) {
		ssize_t k = send(pfd[i].fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);

		if (k > 0)
			total += k;
	}
	printf("noread: %llu B more could be sent 2 s later\n", total - before);
	while (now() - t0 < timeout)
		sleep(1);
	return 0;
}

static int cmd_stuck(char **av, size_t size, int timeout)
{
	static uint8_t buf[65536];
	int rcvbuf = 2048, fd, err = 0;
	socklen_t l = sizeof(err);
	struct pollfd pfd;
	size_t sent = 0;
	double t0;

	resolve(av[0], av[1]);
	fd = socket(target.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	/* before connect, so the window it advertises stays tiny */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (connect(fd, (struct sockaddr *)&target, target_len))
		die("connect: %s", strerror(errno));
	while (sent < size) {
		size_t len = size - sent < sizeof(buf) ? size - sent : sizeof(buf);
		ssize_t k = send(fd, buf, len, MSG_NOSIGNAL);

		if (k <= 0)
			die("stuck: send: %s after %zu B", strerror(errno), sent);
		sent += k;
	}
	if (shutdown(fd, SHUT_WR))
		die("shutdown: %s", strerror(errno));
	t0 = now();
	pfd.fd = fd;
	pfd.events = 0;		/* POLLERR and POLLHUP only: we never read */
	while (now() - t0 < timeout) {
		poll_or_die(&pfd, 1, 500);
		if (pfd.revents & (POLLERR | POLLHUP))
			break;
	}
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
	printf("stuck: sent %zu B, shut down writing, never read: %s after %.1f s\n",
	       sent, pfd.revents ? (err ? strerror(err) : "closed") : "still open",
	       now() - t0);
	close(fd);
	return err == ECONNRESET ? 0 : 1;
}

static void __attribute__((noreturn)) cmd_listen(char **av, const char *ready)
{
	int one = 1, fd;

	resolve(av[0], av[1]);
	fd = socket(target.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&target, target_len) || listen(fd, 8))
		die("bind/listen: %s", strerror(errno));
	touch(ready);
	for (;;)
		pause();
}

static int cmd_load(const char *path, int argc, char **argv)
{
	char params[1024] = "";
	int fd, i;

	for (i = 0; i < argc; i++) {
		if (strlen(params) + strlen(argv[i]) + 2 > sizeof(params))
			die("parameters too long");
		if (i)
			strcat(params, " ");
		strcat(params, argv[i]);
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	if (syscall(SYS_finit_module, fd, params, 0)) {
		int e = errno;

		printf("load: errno=%s (%s)\n", strerrorname_np(e), strerror(e));
		return 1;
	}
	printf("load: ok\n");
	return 0;
}

/* The commands that take HOST PORT N READYFILE TIMEOUT. */
static const struct {
	const char *name;
	int (*run)(char **av, unsigned int n, const char *ready, int timeout);
} ready_cmds[] = {
	{ "hold", cmd_hold },
	{ "busy", cmd_busy },
	{ "idle", cmd_idle },
	{ "noread", cmd_noread },
	{ NULL, NULL }
};

int main(int argc, char **argv)
{
	unsigned int i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 0; ready_cmds[i].name; i++)
		if (argc >= 7 && !strcmp(argv[1], ready_cmds[i].name))
			return ready_cmds[i].run(argv + 2, strtoul(argv[4], NULL, 0),
						 argv[5], atoi(argv[6]));
	if (argc >= 5 && !strcmp(argv[1], "echo"))
		return cmd_echo(argv + 2, strtoul(argv[4], NULL, 0));
	if (argc >= 7 && !strcmp(argv[1], "conc"))
		return cmd_conc(argv + 2, strtoul(argv[4], NULL, 0),
				strtoul(argv[5], NULL, 0), atoi(argv[6]));
	if (argc >= 7 && !strcmp(argv[1], "burst"))
		return cmd_burst(argv + 2, strtoul(argv[4], NULL, 0),
				 strtoul(argv[5], NULL, 0), atoi(argv[6]));
	if (argc >= 6 && !strcmp(argv[1], "tburst"))
		return cmd_tburst(argv + 2, strtoul(argv[4], NULL, 0),
				  strtoul(argv[5], NULL, 0));
	if (argc >= 6 && !strcmp(argv[1], "stuck"))
		return cmd_stuck(argv + 2, strtoul(argv[4], NULL, 0), atoi(argv[5]));
	if (argc >= 5 && !strcmp(argv[1], "listen"))
		cmd_listen(argv + 2, argv[4]);
	if (argc >= 3 && !strcmp(argv[1], "load"))
		return cmd_load(argv[2], argc - 3, argv + 3);
	fprintf(stderr, "usage: see the comment at the top of echoclient.c\n");
	return 2;
}
