#!/bin/busybox sh
# shellcheck shell=dash
# /init of the vm-test initramfs (busybox sh, PID 1). Runs the fastecho.ko
# checks and reports on the second serial port (/dev/ttyS1), one line each:
#   @@RESULT step=NAME status=PASS|FAIL detail=TEXT
# between "@@BEGIN kernel=..." and "@@DONE". The kernel console (ttyS0)
# carries everything else, including the full dmesg at the end.

INIT_NAME=vm-test
# shellcheck source=kernel/vm/init-common.sh
. /init-common.sh

KO=/fastecho.ko
SYS=/sys/kernel/fastecho
PORT=12345
FAILS=0

say() { echo "vm-test: $*"; }
result() {	# step status detail...
	step=$1 status=$2
	shift 2
	echo "@@RESULT step=$step status=$status detail=$*" >&3
	say "$step $status $*"
	[ "$status" = PASS ] || FAILS=$((FAILS + 1))
}
# Output of a command, for the host to show: @@OUT step| line
out() {	# step file
	sed "s/^/@@OUT $1| /" "$2" >&3
}
loaded() { [ -d /sys/module/fastecho ]; }
counter() { cat "$SYS/$1" 2>/dev/null || echo "?"; }
unload() { loaded && timeout 60 rmmod fastecho; ! loaded; }
wait_until() {	# seconds command...: poll it every 0.1 s until it succeeds
	n=$(($1 * 10)) i=0
	shift
	while ! "$@" && [ $i -lt $n ]; do
		usleep 100000
		i=$((i + 1))
	done
	"$@"
}
active_is() { [ "$(counter active)" = "$1" ]; }
wait_file() { wait_until "$2" [ -e "$1" ]; }	# file seconds
wait_active() { wait_until "$2" active_is "$1"; }	# value seconds
# echoclient CMD 127.0.0.1 $PORT N /tmp/CMD.ready LIMIT in the background,
# output in /tmp/CMD.log and its pid in $cl; true once it has created
# /tmp/CMD.ready, within WAIT seconds.
client() {	# cmd n limit wait
	rm -f "/tmp/$1.ready"
	echoclient "$1" 127.0.0.1 $PORT "$2" "/tmp/$1.ready" "$3" >"/tmp/$1.log" 2>&1 &
	cl=$!
	wait_file "/tmp/$1.ready" "$4"
}
uptime_s() { cut -d' ' -f1 /proc/uptime; }
# rmmod while the client CLIENT_PID runs, then wait for it: true if rmmod
# (60 s at most) and the client exit 0 and the module is gone; sets took
# ("T0 -> T1 s") and why (what went wrong, for a FAIL line).
rmmod_while() {	# client_pid
	t0=$(uptime_s)
	timeout 60 rmmod fastecho
	rc=$?
	took="$t0 -> $(uptime_s) s"
	wait "$1"
	crc=$?
	why="rmmod rc=$rc, loaded=$(loaded && echo yes || echo no), client rc=$crc"
	[ $rc = 0 ] && ! loaded && [ $crc = 0 ]
}

# 1. load with the defaults and run the project's conformance suite
if insmod $KO >/tmp/insmod.log 2>&1 && [ -d $SYS ]; then
	result load PASS "insmod with defaults; $SYS present"
else
	result load FAIL "insmod: $(cat /tmp/insmod.log)"
fi
if [ -x /bin/ringecho ]; then
	t0=$(uptime_s)
	timeout 180 /bin/ringecho check 127.0.0.1:$PORT >/tmp/check.log 2>&1
	rc=$?
	out check /tmp/check.log
	if [ $rc = 0 ]; then
		result check PASS "ringecho check 127.0.0.1:$PORT exit 0 ($t0 -> $(uptime_s) s)"
	else
		result check FAIL "ringecho check exit $rc: $(grep -i fail /tmp/check.log | head -n1)"
	fi
else
	result check FAIL "no ringecho binary in the initramfs"
fi
if echoclient echo 127.0.0.1 $PORT 1000000 >/tmp/echo.log 2>&1; then
	result echo PASS "$(cat /tmp/echo.log)"
else
	result echo FAIL "$(cat /tmp/echo.log)"
fi

# 2. 1,000 concurrent connections, each echoing 50,000 bytes byte-exact
echoclient conc 127.0.0.1 $PORT 1000 50000 120 >/tmp/conc.log 2>&1
rc=$?
if [ $rc = 0 ]; then
	result conc1000 PASS "$(tail -n1 /tmp/conc.log)"
else
	result conc1000 FAIL "$(head -n3 /tmp/conc.log | tr '\n' ' ')"
fi

# 3. rmmod while a client holds HOLD_N connections open (reloaded with a
# backlog that takes them all at once, as a benchmark host would)
HOLD_N=4000
unload
insmod $KO backlog=4096
if client hold $HOLD_N 120 150 && wait_active $HOLD_N 10; then
	active=$(counter active)
	if rmmod_while $cl; then
		result rmmod_held PASS "active=$active before; rmmod took $took; $(tail -n1 /tmp/hold.log)"
	else
		result rmmod_held FAIL "$why: $(tail -n1 /tmp/hold.log)"
	fi
else
	result rmmod_held FAIL "client did not get $HOLD_N connections up (active=$(counter active)): $(tail -n2 /tmp/hold.log | tr '\n' ' ')"
	kill $cl 2>/dev/null
	unload
fi

# 3b. rmmod while 200 connections are moving data (half of them never read)
insmod $KO
if client busy 200 120 120; then
	sleep 1
	bytes=$(counter bytes_echoed)
	if rmmod_while $cl; then
		result rmmod_busy PASS "$bytes B echoed before; rmmod took $took; $(tail -n1 /tmp/busy.log)"
	else
		result rmmod_busy FAIL "$why: $(tail -n2 /tmp/busy.log | tr '\n' ' ')"
	fi
else
	result rmmod_busy FAIL "client did not get data moving: $(tail -n2 /tmp/busy.log | tr '\n' ' ')"
	kill $cl 2>/dev/null
	unload
fi

# 4. bad parameters and a port in use are refused, other addresses work
bad=""
for p in port=0 port=70000 port=-1 backlog=0 backlog=-5 max_conns=0 max_conns=-1 addr=garbage addr=1.2.3 addr=::zz; do
	r=$(echoclient load $KO $p)
	msg=$(dmesg | grep 'fastecho: ' | tail -n1)
	case "$r" in
	*errno=EINVAL*) ;;
	*) bad="$bad $p:[$r]" ;;
	esac
	case "$msg" in
	*invalid*) ;;
	*) bad="$bad $p:no-pr_err" ;;
	esac
	loaded && { bad="$bad $p:loaded"; unload; }
done
if [ -z "$bad" ]; then
	result bad_params PASS "port=0 port=70000 port=-1 backlog=0 backlog=-5 max_conns=0 max_conns=-1 addr=garbage addr=1.2.3 addr=::zz all EINVAL with a pr_err line"
else
	result bad_params FAIL "$bad"
fi

rm -f /tmp/lready
echoclient listen 127.0.0.1 $PORT /tmp/lready &
lst=$!
wait_file /tmp/lready 10
r1=$(echoclient load $KO)
loaded && unload
r2=$(echoclient load $KO addr=0.0.0.0)
loaded && unload
kill $lst
wait $lst 2>/dev/null
case "$r1 / $r2" in
*errno=EADDRINUSE*errno=EADDRINUSE*)
	result port_in_use PASS "127.0.0.1 and 0.0.0.0 on a port in use: $r1" ;;
*)
	result port_in_use FAIL "$r1 / $r2" ;;
esac

good=""
for spec in "addr=0.0.0.0 port=12346 backlog=4096|127.0.0.1 12346" \
	    "addr=::1 port=65535|::1 65535" "addr=:: port=1|127.0.0.1 1"; do
	params=${spec%|*}
	target=${spec#*|}
	# shellcheck disable=SC2086
	r=$(echoclient load $KO $params)
	# shellcheck disable=SC2086
	if [ "$r" = "load: ok" ] && echoclient echo $target 70000 >/dev/null 2>&1; then
		good="$good ok($params)"
	else
		good="$good FAILED($params: $r)"
	fi
	unload || good="$good FAILED(rmmod)"
done
case "$good" in
*FAILED*) result params FAIL "$good" ;;
*) result params PASS "$good" ;;
esac

# 5. 20 load/unload cycles with an echo in each
fail=""
i=1
while [ $i -le 20 ]; do
	if ! insmod $KO; then
		fail="cycle $i: insmod"
		break
	fi
	if ! echoclient echo 127.0.0.1 $PORT 20000 >/tmp/cyc.log 2>&1; then
		fail="cycle $i: $(cat /tmp/cyc.log)"
		unload
		break
	fi
	if ! unload; then
		fail="cycle $i: rmmod"
		break
	fi
	i=$((i + 1))
done
if [ -z "$fail" ]; then
	result cycles PASS "20 insmod/echo/rmmod cycles"
else
	result cycles FAIL "$fail"
fi

# 6. the counters
insmod $KO
c0="$(counter accepted)/$(counter active)/$(counter bytes_echoed)"
echoclient conc 127.0.0.1 $PORT 10 12345 30 >/dev/null 2>&1
crc=$?
wait_active 0 10
c1="$(counter accepted)/$(counter active)/$(counter bytes_echoed)"
client hold 5 30 30
wait_active 5 10
c2="$(counter accepted)/$(counter active)/$(counter bytes_echoed)"
unload
wait $cl
hrc=$?
want1="10/0/123450"
want2="15/5/123455"
if [ "$c0" = "0/0/0" ] && [ $crc = 0 ] && [ "$c1" = "$want1" ] &&
   [ "$c2" = "$want2" ] && [ $hrc = 0 ]; then
	result counters PASS "accepted/active/bytes_echoed: fresh $c0, after 10x12345 B $c1, 5 held $c2"
else
	result counters FAIL "fresh $c0 (want 0/0/0), after 10x12345 B $c1 (want $want1), 5 held $c2 (want $want2), client rc $crc/$hrc"
fi

# 6a. hostile clients: a connection cap, idle connections, a connect-send-
# close burst, clients that never read
meminfo() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }	# KiB
# a counter as a number for $((...)), where "?" (absent) would end this shell
num() { case $1 in '' | *[!0-9]*) echo 0 ;; *) echo "$1" ;; esac; }
# server-side sockets on $PORT other than the listener, from /proc/net/tcp{,6}
server_socks() {
	awk -v p="$(printf '%04X' "$1")" 'FNR > 1 { split($2, l, ":"); if (l[2] == p && $4 != "0A") n++ } END { print n + 0 }' \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null
}
server_states() {	# e.g. "09:12 01:3" (hex TCP state: count)
	awk -v p="$(printf '%04X' "$1")" 'FNR > 1 { split($2, l, ":"); if (l[2] == p && $4 != "0A") c[$4]++ } END { for (k in c) printf "%s:%d ", k, c[k] }' \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null
}
no_socks() { [ "$(server_socks "$1")" = 0 ]; }
wait_socks() { wait_until "$2" no_socks "$1"; }	# port seconds: until none is left

insmod $KO max_conns=50
client idle 80 60 60
wait_active 50 10
got="accepted $(counter accepted), refused $(counter refused), active $(counter active)"
kill $cl
wait $cl 2>/dev/null
wait_active 0 10
unload
if [ "$got" = "accepted 50, refused 30, active 50" ] &&
   grep -q ' 30 closed by the server' /tmp/idle.log; then
	result max_conns PASS "max_conns=50, 80 clients: $got; $(cat /tmp/idle.log)"
else
	result max_conns FAIL "max_conns=50, 80 clients: $got (want accepted 50, refused 30, active 50); $(cat /tmp/idle.log)"
fi

# N connections that never send: the module holds no echo buffer for them,
# so the slab grows by about what the sockets themselves cost (both ends'
# here, client and server run in the same guest)
IDLE_N=2000
insmod $KO backlog=4096
sync
echo 3 >/proc/sys/vm/drop_caches
slab0=$(meminfo Slab)
avail0=$(meminfo MemAvailable)
client idle $IDLE_N 120 120
wait_active $IDLE_N 10
sleep 1
slab1=$(meminfo Slab)
avail1=$(meminfo MemAvailable)
act=$(counter active)
bufs=$(counter buffers)
modmem=$(counter mem_bytes)
kill $cl
wait $cl 2>/dev/null
wait_active 0 20
unload
per=$(((slab1 - slab0) * 1024 / IDLE_N))
detail="$IDLE_N idle: slab +$(((slab1 - slab0) / 1024)) MiB = $per B per connection (both ends' sockets), MemAvailable -$(((avail0 - avail1) / 1024)) MiB; module: $bufs buffers, mem_bytes $modmem ($(($(num "$modmem") / IDLE_N)) B per connection)"
if [ "$act" = $IDLE_N ] && [ "$bufs" = 0 ] && [ $per -lt 12288 ]; then
	result idle_mem PASS "$detail"
else
	result idle_mem FAIL "$detail; active $act (want $IDLE_N), buffers want 0, want < 12288 B per connection"
fi

# kecho's bench (1,000 threads at once: connect, send, read, close) against
# a backlog that takes them; afterwards no server-side socket may linger
BURST_N=1000
BURST_ROUNDS=3
sysctl -qw net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096
insmod $KO backlog=4096
t0=$(uptime_s)
echoclient tburst 127.0.0.1 $PORT $BURST_N $BURST_ROUNDS >/tmp/burst.log 2>&1
brc=$?
t1=$(uptime_s)
left_at_end="$(server_socks $PORT) [$(server_states $PORT)]"
if wait_socks $PORT 5; then
	gone="none left 5 s later"
else
	gone="still there 5 s later: $(server_socks $PORT) [$(server_states $PORT)]"
fi
act=$(counter active)
ling=$(counter lingered)
unload
sysctl -qw net.ipv4.tcp_max_syn_backlog=128
detail="$(cat /tmp/burst.log) ($t0 -> $t1 s); server-side sockets on :$PORT at the end $left_at_end, $gone; active $act, reset at FE_LINGER $ling"
if [ $brc = 0 ] && [ "$gone" = "none left 5 s later" ] && [ "$act" = 0 ]; then
	result burst PASS "$detail"
else
	result burst FAIL "$detail"
fi

# clients that write and never read must stall: the module stops reading
# while its echo is pending, so what it holds is bounded
NR_N=50
insmod $KO
avail0=$(meminfo MemAvailable)
client noread $NR_N 120 120
b1=$(counter bytes_echoed)
bufs=$(counter buffers)
avail1=$(meminfo MemAvailable)
sleep 2
b2=$(counter bytes_echoed)
kill $cl
wait $cl 2>/dev/null
wait_active 0 20
bufs_after=$(counter buffers)
unload
sent=$(sed -n 's/.*(\([0-9]*\) B per connection.*/\1/p' /tmp/noread.log | head -n1)
detail="$(head -n1 /tmp/noread.log); echoed $b1 B, 2 s later $b2 B; $bufs buffers held, MemAvailable -$(((avail0 - avail1) / 1024)) MiB with them; buffers after close $bufs_after"
if [ -n "$sent" ] && [ "$sent" -lt $((64 << 20)) ] && [ "$b1" = "$b2" ] &&
   [ "$bufs" -le $NR_N ] && [ "$bufs_after" = 0 ]; then
	result noread PASS "$detail"
else
	result noread FAIL "$detail (want stalled: under 64 MiB per connection, no progress, at most $NR_N buffers)"
fi

# a client that half-closes and never reads: the echo and the FIN stay
# queued with no progress, so the module resets it after FE_LINGER (10 s)
insmod $KO
t0=$(uptime_s)
echoclient stuck 127.0.0.1 $PORT 65536 40 >/tmp/stuck.log 2>&1
src=$?
t1=$(uptime_s)
wait_active 0 5
got="lingered $(counter lingered), active $(counter active), left on :$PORT $(server_socks $PORT)"
unload
if [ $src = 0 ] && [ "$got" = "lingered 1, active 0, left on :$PORT 0" ]; then
	result linger PASS "$(cat /tmp/stuck.log) ($t0 -> $t1 s); $got"
else
	result linger FAIL "$(cat /tmp/stuck.log) ($t0 -> $t1 s); $got (want a reset, lingered 1, active 0, none left)"
fi

# 6b. the host scripts, as a person runs them (busybox sh stands in for bash)
o1=$(sh /kmod/load-kmod.sh 2>&1)
r1=$?
o2=$(FASTECHO_KO=$KO sh /kmod/load-kmod.sh port=12350 2>&1)
r2=$?
echoclient echo 127.0.0.1 12350 1000 >/dev/null 2>&1
r3=$?
o4=$(sh /kmod/unload-kmod.sh 2>&1)
r4=$?
o5=$(sh /kmod/unload-kmod.sh 2>&1)
r5=$?
o6=$(FASTECHO_KO=$KO sh /kmod/load-kmod.sh port=0 2>&1)
r6=$?
loaded && unload
case "$r1$r2$r3$r4$r5$r6|$o1|$o5|$o6" in
100011"|"*"no kernel headers"*"|"*"not loaded"*"|"*"invalid port 0"*)
	result scripts PASS "no headers: '$o1' / FASTECHO_KO load+echo+unload ok / '$o5' / '$o6'" ;;
*)
	result scripts FAIL "rc $r1$r2$r3$r4$r5$r6 (want 100011): '$o1' '$o2' '$o4' '$o5' '$o6'" ;;
esac

# 7. the kernel log since the start of the test
dmesg >/tmp/dmesg.log
sed -n '/vm-test: start/,$p' /tmp/dmesg.log >/tmp/dmesg.test
bad=$(grep -E 'BUG|Oops|WARNING|refcount|leak|UBSAN|KASAN|hogged CPU|hung_task|blocked for more than' /tmp/dmesg.test | head -n3 | tr '\n' ' ')
pre=$(sed '/vm-test: start/,$d' /tmp/dmesg.log | grep -cE 'BUG|Oops|WARNING|refcount|leak|UBSAN|KASAN')
if [ -z "$bad" ] && grep -q 'vm-test: start' /tmp/dmesg.test; then
	result dmesg PASS "$(wc -l </tmp/dmesg.test) lines since the test began, none matching; boot messages matching before it: $pre"
else
	result dmesg FAIL "${bad:-the start marker is gone from the log}"
fi
out dmesg /tmp/dmesg.test

echo "@@DONE fails=$FAILS" >&3
echo "=== full dmesg ==="
cat /tmp/dmesg.log
sync
poweroff -f
