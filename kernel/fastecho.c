// SPDX-License-Identifier: GPL-2.0
/*
 * fastecho: an event-driven in-kernel TCP echo server (RFC 862).
 *
 * A listening socket's ->sk_data_ready queues the accept work; every
 * accepted connection gets ->sk_data_ready, ->sk_write_space and
 * ->sk_state_change callbacks that queue that connection's work item. The
 * work item does non-blocking receives and sends until they would block, so
 * no kernel thread or worker ever sleeps on a connection. The number of
 * connections is capped by max_conns; an idle connection costs one small
 * struct fe_conn besides its socket: the echo buffer exists only while
 * there is data to echo.
 *
 * Closing: at EOF (everything echoed) the module sends its FIN with
 * kernel_sock_shutdown() and keeps the socket, with its callbacks, until TCP
 * reaches TCP_CLOSE (the peer acknowledged the FIN) and only then releases
 * it. A socket that makes no progress for FE_LINGER is released with a reset
 * instead. Released early, the socket would be an orphan in LAST_ACK that
 * nobody owns; see "Closing" in kernel/README.md for why that matters on 6.1.
 *
 * Ownership: a connection is reference counted. The connection list holds
 * one reference until the connection is closed; every queued instance of
 * its work item holds one more, taken by whoever queued it while the
 * connection was known to be alive (a socket callback under
 * ->sk_callback_lock with ->sk_user_data still set, or the unload path
 * under fe_conns_lock). Only the work item closes a connection, and it
 * first detaches the socket callbacks under ->sk_callback_lock, so no
 * callback can find the connection afterwards; the memory goes when the
 * last reference is dropped.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/inet.h>
#include <linux/kobject.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/net.h>
#include <linux/netdevice.h>
#include <linux/slab.h>
#include <linux/socket.h>
#include <linux/sysfs.h>
#include <linux/tcp.h>
#include <linux/timer.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <net/net_namespace.h>
#include <net/sock.h>
#include <net/tcp_states.h>

/*
 * One buffer per connection with data in flight: bounds what a client that
 * never reads costs. Allocated when data arrives, freed once it is echoed.
 */
#define FE_BUF_SIZE	(16 * 1024)
/* A closing connection whose peer acknowledges nothing for this long is reset. */
#define FE_LINGER	(10 * HZ)
/* Bytes one run of a connection's work moves before it yields the CPU. */
#define FE_WORK_BUDGET	(64 * 1024)
/* Connections one run of the accept work takes before it yields. */
#define FE_ACCEPT_BUDGET	64

static int port = 12345;
module_param(port, int, 0444);
MODULE_PARM_DESC(port, "TCP port to listen on, 1-65535 (default 12345)");

static int backlog = 128;
module_param(backlog, int, 0444);
MODULE_PARM_DESC(backlog, "listen() backlog, at least 1 (default 128; the kernel caps it at net.core.somaxconn)");

static char addr[INET6_ADDRSTRLEN] = "127.0.0.1";
module_param_string(addr, addr, sizeof(addr), 0444);
MODULE_PARM_DESC(addr, "address to listen on (default 127.0.0.1; 0.0.0.0 for all IPv4 addresses, :: for all IPv6 and IPv4, ::1)");

static int max_conns = 65536;
module_param(max_conns, int, 0444);
MODULE_PARM_DESC(max_conns, "connections served at once, at least 1 (default 65536); beyond it new ones are reset at once and counted as refused");

struct fe_conn {
	struct socket *sock;
	struct work_struct work;
	struct timer_list linger;	/* closing: FE_LINGER without progress */
	struct kref ref;
	struct list_head node;		/* on fe_conns, under fe_conns_lock */
	void (*saved_data_ready)(struct sock *sk);
	void (*saved_write_space)(struct sock *sk);
	void (*saved_state_change)(struct sock *sk);
	char *buf;			/* FE_BUF_SIZE bytes while data is in flight */
	size_t len;			/* bytes received into buf */
	size_t sent;			/* bytes of buf already echoed */
	/* The rest is only touched by the work item. */
	unsigned long deadline;		/* closing: jiffies of the reset */
	u32 snd_una;			/* closing: progress seen so far */
	bool fin_sent;			/* EOF echoed, FIN sent, socket kept */
	bool closed;
};

static struct {
	struct socket *sock;
	struct delayed_work work;	/* accepts; delayed only to retry */
	void (*saved_data_ready)(struct sock *sk);
} fe_listener;

/*
 * A per-CPU (bound) workqueue: a connection's work runs on the CPU whose
 * softirq received the packet and queued it, so the socket stays cache hot,
 * and no item ever sleeps, so concurrency management keeps about one busy
 * worker per CPU. max_active (0: the default) limits only how many items
 * execute at once per CPU, not how many connections exist: excess items
 * wait their turn in order. Not WQ_MEM_RECLAIM (nothing in memory reclaim
 * waits on us), not WQ_HIGHPRI (an echo server shouldn't preempt other
 * kernel work), not WQ_UNBOUND (it would give up that locality and add a
 * cross-CPU wakeup per event). Items stay short: each run is capped by
 * FE_WORK_BUDGET and requeues itself. On loopback the softirq runs on the
 * sending client's CPU, so the echo work shares that CPU with the client.
 */
static struct workqueue_struct *fe_wq;

static LIST_HEAD(fe_conns);
static DEFINE_MUTEX(fe_conns_lock);
static bool fe_stopping;		/* written under fe_conns_lock */
static DECLARE_WAIT_QUEUE_HEAD(fe_stop_wait);

static atomic64_t fe_accepted = ATOMIC64_INIT(0);
static atomic64_t fe_refused = ATOMIC64_INIT(0);
static atomic64_t fe_bytes = ATOMIC64_INIT(0);
static atomic_t fe_active = ATOMIC_INIT(0);
static atomic_t fe_dropped = ATOMIC_INIT(0);
static atomic_t fe_lingered = ATOMIC_INIT(0);	/* closes that ended in a reset */
static atomic_t fe_allocated = ATOMIC_INIT(0);	/* live struct fe_conn */
static atomic_t fe_buffers = ATOMIC_INIT(0);	/* live echo buffers */
/* Size of one struct fe_conn as the allocator rounds it (for mem_bytes). */
static size_t fe_conn_size;

static struct kobject *fe_kobj;

static void fe_buf_free(struct fe_conn *c)
{
	if (c->buf) {
		kvfree(c->buf);
		c->buf = NULL;
		atomic_dec(&fe_buffers);
	}
	c->len = 0;
	c->sent = 0;
}

static void fe_conn_release(struct kref *ref)
{
	struct fe_conn *c = container_of(ref, struct fe_conn, ref);

	fe_buf_free(c);
	kfree(c);
	atomic_dec(&fe_allocated);
}

static void fe_conn_put(struct fe_conn *c)
{
	kref_put(&c->ref, fe_conn_release);
}

/* The caller guarantees @c is alive; the queued work owns the new reference. */
static void fe_conn_queue(struct fe_conn *c)
{
	kref_get(&c->ref);
	if (!queue_work(fe_wq, &c->work))
		fe_conn_put(c);		/* already pending: it has its reference */
}

/*
 * Release a socket the module is done with. One that TCP is not done with
 * (any state but TCP_CLOSE) gets SO_LINGER 0 first, so it is reset and freed
 * now instead of becoming an orphan. Orphans are what the module must not
 * leave: on 6.1, tcp_close() of a kernel socket (sk_net_refcnt == 0) stops
 * all of its timers (inet_csk_clear_xmit_timers_sync(), from "tcp: properly
 * terminate timers for kernel sockets"), so an orphan whose FIN or final ACK
 * is lost is never retransmitted and stays in LAST_ACK or FIN_WAIT1 forever.
 */
static void fe_sock_release(struct socket *sock)
{
	if (READ_ONCE(sock->sk->sk_state) != TCP_CLOSE)
		sock_no_linger(sock->sk);
	sock_release(sock);
}

/* FE_LINGER passed for a closing connection: the work decides. */
static void fe_conn_linger(struct timer_list *t)
{
	struct fe_conn *c = from_timer(c, t, linger);

	fe_conn_queue(c);
	fe_conn_put(c);			/* the timer's reference */
}

/* Work item only: (re)arm the closing deadline; the timer holds a reference. */
static void fe_conn_arm(struct fe_conn *c)
{
	c->deadline = jiffies + FE_LINGER;
	kref_get(&c->ref);
	if (mod_timer(&c->linger, c->deadline))
		fe_conn_put(c);		/* it was pending: it has its reference */
}

/*
 * sk_data_ready and sk_state_change: data arrived or the state changed
 * (FIN, reset); either way the work item looks at the socket.
 */
static void fe_conn_wake(struct sock *sk)
{
	struct fe_conn *c;

	read_lock_bh(&sk->sk_callback_lock);
	c = sk->sk_user_data;
	if (c)
		fe_conn_queue(c);
	read_unlock_bh(&sk->sk_callback_lock);
}

static void fe_conn_write_space(struct sock *sk)
{
	struct fe_conn *c;

	read_lock_bh(&sk->sk_callback_lock);
	c = sk->sk_user_data;
	if (c && sk_stream_is_writeable(sk)) {
		if (sk->sk_socket)
			clear_bit(SOCK_NOSPACE, &sk->sk_socket->flags);
		fe_conn_queue(c);
	}
	read_unlock_bh(&sk->sk_callback_lock);
}

/*
 * Called from the work item only, so at most once per connection. A socket
 * that TCP is not done with yet (unload, errors, FE_LINGER) is reset, never
 * left behind as an orphan (see fe_sock_release()).
 */
static void fe_conn_close(struct fe_conn *c)
{
	struct sock *sk = c->sock->sk;

	write_lock_bh(&sk->sk_callback_lock);
	sk->sk_user_data = NULL;
	sk->sk_data_ready = c->saved_data_ready;
	sk->sk_write_space = c->saved_write_space;
	sk->sk_state_change = c->saved_state_change;
	write_unlock_bh(&sk->sk_callback_lock);

	if (timer_delete_sync(&c->linger))
		fe_conn_put(c);		/* the timer's reference */
	fe_buf_free(c);

	mutex_lock(&fe_conns_lock);
	list_del(&c->node);
	mutex_unlock(&fe_conns_lock);

	/* After fe_conn_finish() it is normally in TCP_CLOSE: freed at once. */
	fe_sock_release(c->sock);
	c->sock = NULL;
	c->closed = true;
	if (atomic_dec_and_test(&fe_active) && READ_ONCE(fe_stopping))
		wake_up(&fe_stop_wait);
	fe_conn_put(c);			/* the list's reference */
}

/*
 * Echo until the socket would block. Returns 0 to wait for the next
 * callback, -EAGAIN when the budget ran out with work left, and any other
 * error (or -ESHUTDOWN after EOF with nothing left to send) to close.
 */
static int fe_conn_echo(struct fe_conn *c)
{
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL };
	struct sock *sk = c->sock->sk;
	size_t moved = 0;
	struct kvec vec;
	int n;

	if (!c->buf) {
		/*
		 * Nothing pending: a buffer only if there is something to
		 * read (data, EOF or an error). Whatever arrives after this
		 * check calls ->sk_data_ready or ->sk_state_change, which
		 * queues this work again.
		 */
		if (skb_queue_empty_lockless(&sk->sk_receive_queue) &&
		    !READ_ONCE(sk->sk_err) &&
		    !(READ_ONCE(sk->sk_shutdown) & RCV_SHUTDOWN) &&
		    READ_ONCE(sk->sk_state) != TCP_CLOSE)
			return 0;
		c->buf = kvmalloc(FE_BUF_SIZE, GFP_KERNEL);
		if (!c->buf)
			return -ENOMEM;
		atomic_inc(&fe_buffers);
	}

	for (;;) {
		/* Backpressure: nothing is read while echoed bytes are pending. */
		while (c->sent < c->len) {
			vec.iov_base = c->buf + c->sent;
			vec.iov_len = c->len - c->sent;
			msg.msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
			n = kernel_sendmsg(c->sock, &msg, &vec, 1, vec.iov_len);
			if (n == -EAGAIN)
				return 0;	/* ->sk_write_space requeues us */
			if (n < 0)
				return n;
			c->sent += n;
			atomic64_add(n, &fe_bytes);
		}
		c->len = 0;
		c->sent = 0;

		if (moved >= FE_WORK_BUDGET)
			return -EAGAIN;

		vec.iov_base = c->buf;
		vec.iov_len = FE_BUF_SIZE;
		msg.msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
		n = kernel_recvmsg(c->sock, &msg, &vec, 1, FE_BUF_SIZE,
				   MSG_DONTWAIT);
		if (n == -EAGAIN) {
			/* Drained: an idle connection holds no buffer. */
			fe_buf_free(c);
			return 0;	/* ->sk_data_ready requeues us */
		}
		if (n < 0)
			return n;
		if (n == 0)
			return -ESHUTDOWN;	/* EOF and everything echoed */
		c->len = n;
		moved += n;
	}
}

/*
 * EOF after everything was echoed: send the FIN but keep the socket (and
 * our callbacks) until TCP is done with it, so it never becomes an orphan
 * that nobody watches (see the comment at the top).
 */
static void fe_conn_finish(struct fe_conn *c)
{
	struct sock *sk = c->sock->sk;

	fe_buf_free(c);
	c->fin_sent = true;
	c->snd_una = READ_ONCE(tcp_sk(sk)->snd_una);
	fe_conn_arm(c);
	kernel_sock_shutdown(c->sock, SHUT_WR);
}

/* A closing connection's run: release it once TCP is done, or reset it. */
static void fe_conn_closing(struct fe_conn *c)
{
	struct sock *sk = c->sock->sk;
	u32 una;

	if (READ_ONCE(sk->sk_state) == TCP_CLOSE) {
		fe_conn_close(c);
		return;
	}
	una = READ_ONCE(tcp_sk(sk)->snd_una);
	if (una != c->snd_una) {	/* the peer is acknowledging: wait on */
		c->snd_una = una;
		fe_conn_arm(c);
	} else if (time_after_eq(jiffies, c->deadline)) {
		atomic_inc(&fe_lingered);
		fe_conn_close(c);
	}
}

static void fe_conn_work(struct work_struct *work)
{
	struct fe_conn *c = container_of(work, struct fe_conn, work);
	int err;

	if (c->closed)
		goto out;
	if (READ_ONCE(fe_stopping)) {
		fe_conn_close(c);
		goto out;
	}
	if (c->fin_sent) {
		fe_conn_closing(c);
		goto out;
	}

	err = fe_conn_echo(c);
	if (err == -EAGAIN) {
		fe_conn_queue(c);	/* let other connections run */
	} else if (err == -ESHUTDOWN) {
		fe_conn_finish(c);
		fe_conn_closing(c);	/* a reset may have closed it already */
	} else if (err) {
		fe_conn_close(c);
	}
out:
	fe_conn_put(c);			/* this run's reference */
}

static void fe_listen_data_ready(struct sock *sk)
{
	read_lock_bh(&sk->sk_callback_lock);
	/*
	 * A child socket inherits this callback and ->sk_user_data from the
	 * listener and may receive data before it is accepted: only the
	 * listener itself queues the accept work.
	 */
	if (sk->sk_user_data && sk->sk_state == TCP_LISTEN)
		mod_delayed_work(fe_wq, &fe_listener.work, 0);
	read_unlock_bh(&sk->sk_callback_lock);
}

/* Take over a freshly accepted socket's callbacks; it may already have data. */
static void fe_conn_attach(struct fe_conn *c)
{
	struct sock *sk = c->sock->sk;

	write_lock_bh(&sk->sk_callback_lock);
	/* Never restore the inherited listener callback onto a child. */
	if (sk->sk_data_ready == fe_listen_data_ready)
		c->saved_data_ready = fe_listener.saved_data_ready;
	else
		c->saved_data_ready = sk->sk_data_ready;
	c->saved_write_space = sk->sk_write_space;
	c->saved_state_change = sk->sk_state_change;
	sk->sk_user_data = c;
	sk->sk_data_ready = fe_conn_wake;
	sk->sk_write_space = fe_conn_write_space;
	sk->sk_state_change = fe_conn_wake;
	write_unlock_bh(&sk->sk_callback_lock);
}

static void fe_sock_drop(struct socket *sock)
{
	struct sock *sk = sock->sk;

	write_lock_bh(&sk->sk_callback_lock);
	sk->sk_user_data = NULL;
	if (sk->sk_data_ready == fe_listen_data_ready)
		sk->sk_data_ready = fe_listener.saved_data_ready;
	write_unlock_bh(&sk->sk_callback_lock);
	fe_sock_release(sock);		/* a reset */
}

static void fe_accept_work(struct work_struct *work)
{
	struct socket *sock;
	struct fe_conn *c;
	int i, err;

	for (i = 0; i < FE_ACCEPT_BUDGET; i++) {
		err = kernel_accept(fe_listener.sock, &sock, O_NONBLOCK);
		if (err == -EAGAIN)
			return;
		if (err == -ECONNABORTED)
			continue;
		if (err) {
			/* Out of memory or files: try again soon, not never. */
			pr_warn_ratelimited("accept failed: %d\n", err);
			queue_delayed_work(fe_wq, &fe_listener.work, HZ / 10);
			return;
		}

		/* Over the cap: reset it at once, no orphan left behind. */
		if (atomic_read(&fe_active) >= max_conns) {
			atomic64_inc(&fe_refused);
			fe_sock_drop(sock);
			continue;
		}

		/*
		 * Echoes go out at once, as the userspace servers' do: with Nagle,
		 * a short echo waits for the client's delayed ACK (tens of ms).
		 */
		tcp_sock_set_nodelay(sock->sk);

		c = kzalloc(sizeof(*c), GFP_KERNEL);
		if (!c) {
			atomic_inc(&fe_dropped);
			fe_sock_drop(sock);
			continue;
		}
		atomic_inc(&fe_allocated);
		c->sock = sock;
		kref_init(&c->ref);		/* the list's reference */
		INIT_WORK(&c->work, fe_conn_work);
		timer_setup(&c->linger, fe_conn_linger, 0);

		mutex_lock(&fe_conns_lock);
		list_add_tail(&c->node, &fe_conns);
		atomic_inc(&fe_active);
		atomic64_inc(&fe_accepted);
		fe_conn_attach(c);
		fe_conn_queue(c);
		mutex_unlock(&fe_conns_lock);
	}
	/* More may be waiting: run again after what is already queued. */
	queue_delayed_work(fe_wq, &fe_listener.work, 0);
}

/*
 * The whole string must be one address: with a '\0' delimiter the parsers
 * reject any other character instead of stopping at it.
 */
static int fe_parse_addr(struct sockaddr_storage *ss, int *len)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	const char *end;

	memset(ss, 0, sizeof(*ss));
	if (in4_pton(addr, -1, (u8 *)&sin->sin_addr.s_addr, '\0', &end) &&
	    !*end) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*len = sizeof(*sin);
		return 0;
	}
	if (IS_ENABLED(CONFIG_IPV6) &&
	    in6_pton(addr, -1, sin6->sin6_addr.s6_addr, '\0', &end) && !*end) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*len = sizeof(*sin6);
		return 0;
	}
	return -EINVAL;
}

static int fe_listen_start(void)
{
	struct sockaddr_storage ss;
	struct socket *sock;
	struct sock *sk;
	int len, err;

	err = fe_parse_addr(&ss, &len);
	if (err) {
		pr_err("invalid addr '%s': expected an IPv4 or IPv6 address\n",
		       addr);
		return err;
	}

	err = sock_create_kern(&init_net, ss.ss_family, SOCK_STREAM,
			       IPPROTO_TCP, &sock);
	if (err) {
		pr_err("cannot create a socket for %pISpc: %d\n", &ss, err);
		return err;
	}
	sk = sock->sk;
	/* Reloading must not fail on our own connections in TIME_WAIT. */
	sock_set_reuseaddr(sk);

	err = kernel_bind(sock, (struct sockaddr *)&ss, len);
	if (err) {
		pr_err("cannot bind %pISpc: %d\n", &ss, err);
		goto err_release;
	}

	fe_listener.sock = sock;
	INIT_DELAYED_WORK(&fe_listener.work, fe_accept_work);
	write_lock_bh(&sk->sk_callback_lock);
	fe_listener.saved_data_ready = sk->sk_data_ready;
	sk->sk_user_data = &fe_listener;
	sk->sk_data_ready = fe_listen_data_ready;
	write_unlock_bh(&sk->sk_callback_lock);

	err = kernel_listen(sock, backlog);
	if (err) {
		pr_err("cannot listen on %pISpc: %d\n", &ss, err);
		goto err_restore;
	}
	pr_info("listening on %pISpc, backlog %d\n", &ss, backlog);
	return 0;

err_restore:
	write_lock_bh(&sk->sk_callback_lock);
	sk->sk_user_data = NULL;
	sk->sk_data_ready = fe_listener.saved_data_ready;
	write_unlock_bh(&sk->sk_callback_lock);
	fe_listener.sock = NULL;
err_release:
	sock_release(sock);
	return err;
}

static void fe_listen_stop(void)
{
	struct sock *sk = fe_listener.sock->sk;

	write_lock_bh(&sk->sk_callback_lock);
	sk->sk_user_data = NULL;
	sk->sk_data_ready = fe_listener.saved_data_ready;
	write_unlock_bh(&sk->sk_callback_lock);

	/* No callback can queue it now; this also stops a self-requeue. */
	cancel_delayed_work_sync(&fe_listener.work);
	/* Children still in the accept queue are reset and freed here. */
	sock_release(fe_listener.sock);
	fe_listener.sock = NULL;
}

static void fe_conns_stop(void)
{
	struct fe_conn *c;

	/* Each connection's work sees fe_stopping and closes it. */
	mutex_lock(&fe_conns_lock);
	WRITE_ONCE(fe_stopping, true);
	list_for_each_entry(c, &fe_conns, node)
		fe_conn_queue(c);
	mutex_unlock(&fe_conns_lock);

	/*
	 * Wait for every connection to be closed (callbacks detached) before
	 * the workqueue is drained: draining forbids queueing from outside it.
	 */
	wait_event(fe_stop_wait, atomic_read(&fe_active) == 0);
	WARN_ON(!list_empty(&fe_conns));
}

/*
 * A read-only counter in /sys/kernel/fastecho/: NAME_show() prints
 * READ(&VAR) (atomic_read or atomic64_read), and fe_attr_NAME is its
 * attribute.
 */
#define FE_COUNTER(name, read, var)					\
static ssize_t name##_show(struct kobject *kobj,			\
			   struct kobj_attribute *attr, char *buf)	\
{									\
	return sysfs_emit(buf, "%lld\n", (long long)read(&(var)));	\
}									\
static struct kobj_attribute fe_attr_##name = __ATTR_RO(name)

FE_COUNTER(accepted, atomic64_read, fe_accepted);
FE_COUNTER(active, atomic_read, fe_active);
FE_COUNTER(bytes_echoed, atomic64_read, fe_bytes);
FE_COUNTER(dropped, atomic_read, fe_dropped);
FE_COUNTER(refused, atomic64_read, fe_refused);
FE_COUNTER(lingered, atomic_read, fe_lingered);
FE_COUNTER(buffers, atomic_read, fe_buffers);

/* What the module itself holds now; the sockets' own memory is the stack's. */
static ssize_t mem_bytes_show(struct kobject *kobj, struct kobj_attribute *attr,
			      char *buf)
{
	u64 bytes = (u64)atomic_read(&fe_allocated) * fe_conn_size +
		    (u64)atomic_read(&fe_buffers) * FE_BUF_SIZE;

	return sysfs_emit(buf, "%llu\n", bytes);
}

static struct kobj_attribute fe_attr_mem_bytes = __ATTR_RO(mem_bytes);

static struct attribute *fe_attrs[] = {
	&fe_attr_accepted.attr,
	&fe_attr_active.attr,
	&fe_attr_bytes_echoed.attr,
	&fe_attr_dropped.attr,
	&fe_attr_refused.attr,
	&fe_attr_lingered.attr,
	&fe_attr_buffers.attr,
	&fe_attr_mem_bytes.attr,
	NULL,
};

static const struct attribute_group fe_attr_group = {
	.attrs = fe_attrs,
};

static int __init fastecho_init(void)
{
	int err;

	if (port < 1 || port > 65535) {
		pr_err("invalid port %d: must be 1-65535\n", port);
		return -EINVAL;
	}
	if (backlog < 1) {
		pr_err("invalid backlog %d: must be at least 1\n", backlog);
		return -EINVAL;
	}
	if (max_conns < 1) {
		pr_err("invalid max_conns %d: must be at least 1\n", max_conns);
		return -EINVAL;
	}
	fe_conn_size = kmalloc_size_roundup(sizeof(struct fe_conn));

	fe_wq = alloc_workqueue("fastecho", 0, 0);
	if (!fe_wq)
		return -ENOMEM;

	fe_kobj = kobject_create_and_add("fastecho", kernel_kobj);
	if (!fe_kobj) {
		err = -ENOMEM;
		goto err_wq;
	}
	err = sysfs_create_group(fe_kobj, &fe_attr_group);
	if (err)
		goto err_kobj;

	err = fe_listen_start();
	if (err)
		goto err_kobj;
	return 0;

err_kobj:
	kobject_put(fe_kobj);
err_wq:
	destroy_workqueue(fe_wq);
	return err;
}

static void __exit fastecho_exit(void)
{
	fe_listen_stop();
	fe_conns_stop();
	/*
	 * Every callback is detached; let any softirq that was still returning
	 * from one of ours finish before the module text goes away.
	 */
	synchronize_net();
	destroy_workqueue(fe_wq);
	kobject_put(fe_kobj);
	WARN_ON(atomic_read(&fe_allocated));
	WARN_ON(atomic_read(&fe_buffers));
	pr_info("unloaded: %lld accepted, %lld refused, %lld bytes echoed\n",
		atomic64_read(&fe_accepted), atomic64_read(&fe_refused),
		atomic64_read(&fe_bytes));
}

module_init(fastecho_init);
module_exit(fastecho_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Event-driven in-kernel TCP echo server (RFC 862)");
