#!/bin/sh
# PID 1 of the tier-3 test VM, generated from xtask/src/vm_init.sh by `cargo xtask`.
# Runs every test of every /tests/* libtest binary in a process of its own under a timeout,
# writes its output and a verdict line to the virtio-serial port named "results", then
# powers off. The host decides pass/fail from that port alone (QEMU's exit status says
# nothing: it is 0 after a guest panic too).
export PATH=/bin HOME=/root TMPDIR=/tmp RUST_BACKTRACE=1
export INTERCEPTOR_BIN=/bin/interceptor
export INTERCEPTOR_PROBE=/bin/interceptor-probe
export INTERCEPTOR_EXPECT_BACKEND=lsm
TEST_TIMEOUT=@TEST_TIMEOUT@

mount -t devtmpfs devtmpfs /dev
# The initramfs has no /dev/console node, so the kernel could not hand us stdio.
exec </dev/console >/dev/console 2>&1

mnt() {
    mkdir -p "$3"
    mount -t "$1" "$2" "$3" || echo "init: mount -t $1 $3 failed"
}
mnt proc proc /proc
mnt sysfs sysfs /sys
mnt securityfs securityfs /sys/kernel/security
mnt bpf bpf /sys/fs/bpf
mnt cgroup2 cgroup2 /sys/fs/cgroup
mnt tracefs tracefs /sys/kernel/tracing
mnt tmpfs tmpfs /tmp
mnt tmpfs tmpfs /run
mnt devpts devpts /dev/pts
mnt tmpfs tmpfs /dev/shm
ip link set lo up
hostname interceptor-vm

# The results port shows up as /dev/vportNpM; its name is in sysfs. Virtio probing may
# still be under way, so look for a few seconds.
RES=
tries=0
while [ -z "$RES" ] && [ "$tries" -lt 50 ]; do
    for d in /sys/class/virtio-ports/*; do
        if [ "$(cat "$d/name" 2>/dev/null)" = results ] && [ -e "/dev/${d##*/}" ]; then
            RES="/dev/${d##*/}"
        fi
    done
    [ -n "$RES" ] || { usleep 200000; tries=$((tries + 1)); }
done
if [ -z "$RES" ]; then
    echo "init: no virtio-serial port named 'results'; giving up"
    poweroff -f
fi
exec 3>"$RES"

say() {
    echo "$*" >&3
    echo "$*"
}
# Hundredths of a second since boot (busybox sh has integer arithmetic only).
now() { awk '{ printf "%d", $1 * 100 }' /proc/uptime; }
secs() { printf '%d.%02d' $(($1 / 100)) $(($1 % 100)); }

# Kill whatever a test left behind (a daemon, a held child) so that it cannot hold or slow
# the next test, and drop pins. Kernel threads have no exe link; PID 1 is us.
sweep() {
    left=
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [ "$pid" = 1 ] && continue
        if readlink "$p/exe" >/dev/null 2>&1; then
            comm=$(cat "$p/comm" 2>/dev/null)
            # busybox timeout's watcher outlives the test by up to a second: not news.
            kill -KILL "$pid" 2>/dev/null && [ "$comm" != timeout ] && left="$left $pid($comm)"
        fi
    done
    [ -z "$left" ] || say "INTERCEPTOR-VM-NOTE killed leftover processes:$left"
    rm -rf /sys/fs/bpf/* 2>/dev/null
}

say "INTERCEPTOR-VM-BOOTED $(cut -d' ' -f1 /proc/uptime)"
say "INTERCEPTOR-VM-INFO kernel=$(uname -r) lsm=$(cat /sys/kernel/security/lsm 2>/dev/null) test_timeout=${TEST_TIMEOUT}s"

# Bench mode (`cargo xtask bench kernel --vm`): /bench/run instead of the tests, its output
# to the results port as is, then its exit status; the host reads both.
if [ -x /bench/run ]; then
    say "INTERCEPTOR-VM-BENCH-RUN"
    /bench/run </dev/null >&3 2>&3
    say "INTERCEPTOR-VM-BENCH-EXIT $?"
    exec 3>&-
    sync
    poweroff -f
fi

passed=0
failed=0
ignored=0
# After a guest soft lockup the host boots a fresh VM with interceptor.resume=K: the first
# K tests already have their verdicts, so they are skipped (see xtask/src/vm.rs).
resume=$(sed -n 's/.*interceptor\.resume=\([0-9]*\).*/\1/p' /proc/cmdline)
resume=${resume:-0}
index=0
mkdir -p /run/xtask
for bin in /tests/*; do
    b=${bin##*/}
    if ! "$bin" --list --format terse </dev/null >/run/xtask/list 2>/run/xtask/list.err; then
        say "INTERCEPTOR-VM-TEST $b FAIL (--list failed: $(head -c 300 /run/xtask/list.err))"
        failed=$((failed + 1))
        continue
    fi
    sed -n 's/: test$//p' /run/xtask/list >/run/xtask/names
    "$bin" --list --format terse --ignored </dev/null 2>/dev/null | sed -n 's/: test$//p' >/run/xtask/ignored
    while read -r name; do
        id="$b/$name"
        index=$((index + 1))
        [ "$index" -le "$resume" ] && continue
        if grep -qxF "$name" /run/xtask/ignored; then
            say "INTERCEPTOR-VM-TEST $id IGNORED"
            ignored=$((ignored + 1))
            continue
        fi
        say "INTERCEPTOR-VM-RUN $id"
        t0=$(now)
        timeout -s KILL "$TEST_TIMEOUT" "$bin" --exact "$name" --test-threads=1 </dev/null >&3 2>&3
        rc=$?
        dt=$(($(now) - t0))
        sweep
        if [ "$rc" = 0 ]; then
            st=PASS
            passed=$((passed + 1))
        elif [ "$rc" = 137 ] && [ "$dt" -ge $((TEST_TIMEOUT * 100 - 50)) ]; then
            st=TIMEOUT
            failed=$((failed + 1))
        else
            st=FAIL
            failed=$((failed + 1))
        fi
        say "INTERCEPTOR-VM-TEST $id $st $(secs "$dt")s exit=$rc"
    done </run/xtask/names
done

say "INTERCEPTOR-VM-SUITE-END passed=$passed failed=$failed ignored=$ignored"
exec 3>&-
sync
poweroff -f
