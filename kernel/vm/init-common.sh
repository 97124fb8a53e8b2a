# shellcheck shell=dash
# Sourced first by the /init of the vm-test and vm-bench initramfs (busybox
# sh, PID 1), with INIT_NAME set to vm-test or vm-bench: the applets, /proc,
# /sys, /dev, /tmp and loopback; the probe boot's answer; fd 3 on the second
# serial port, for the host; the "@@BEGIN" line there and INIT_NAME's start
# marker in the kernel log, from which the inits scan it.

/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /tmp
ip link set lo up

# vm_pick_accel's probe boot: only proves that the guest reaches init
if grep -q 'vmtest=probe' /proc/cmdline; then
	echo "@@PROBE ok" >/dev/ttyS1
	poweroff -f
fi

exec 3>/dev/ttyS1
ulimit -n 65536
echo "@@BEGIN kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo)" >&3
echo "$INIT_NAME: start" >/dev/kmsg
