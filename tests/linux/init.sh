#!/bin/sh
# /init of the linux-domu-boot scenario: Debian's cloud kernel, booted as a
# domU, reaches user space and checks what a working system needs, one
# DESIGN 4.4 result line each; then it powers off.
PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mount -t tmpfs -o size=96m tmpfs /tmp
echo "linux: /init reached"
pass=0; fail=0
ok() { echo "RESULT $1 PASS"; pass=$((pass + 1)); }
ko() { echo "RESULT $1 FAIL: $2"; fail=$((fail + 1)); }
uptime() { cut -d' ' -f1 /proc/uptime; }
# 1/100 s as an integer: busybox sh has no floating point.
centi() { echo "$1" | sed 's/\.\([0-9][0-9]\).*/\1/; s/^0*//; s/^$/0/'; }

t=$(cat /sys/hypervisor/type 2>/dev/null)
[ "$t" = xen ] && ok linux-hypervisor-type || ko linux-hypervisor-type "/sys/hypervisor/type is '$t'"

mem_kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo)
echo "linux: MemTotal $mem_kb kB"
# Given 256 MiB (262144 kB): the kernel keeps some for itself.
[ "$mem_kb" -gt 180000 ] && [ "$mem_kb" -le 262144 ] && ok linux-meminfo || ko linux-meminfo "MemTotal $mem_kb kB"

# The wall clock from shared info: between 2024 and 2100.
now=$(date +%s)
echo "linux: date $(date) ($now)"
[ "$now" -gt 1704067200 ] && [ "$now" -lt 4102444800 ] && ok linux-wall-clock || ko linux-wall-clock "date +%s is $now"

# sleep 1 must not end early (timer events), nor hang.
a=$(centi "$(uptime)"); sleep 1; b=$(centi "$(uptime)")
echo "linux: sleep 1 took $((b - a))0 ms of uptime"
[ $((b - a)) -ge 99 ] && [ $((b - a)) -lt 1000 ] && ok linux-sleep-1 || ko linux-sleep-1 "took $((b - a))0 ms"

a=$(centi "$(uptime)")
i=0; while [ $i -lt 1000 ]; do /bin/true || break; i=$((i + 1)); done
b=$(centi "$(uptime)")
echo "linux: 1000 fork+exec+exit in $((b - a))0 ms"
[ $i -eq 1000 ] && ok linux-fork-exec-1000 || ko linux-fork-exec-1000 "stopped after $i"

# 64 MiB through tmpfs: the checksum of what was written, of what is read back.
w=$(dd if=/dev/urandom bs=1M count=64 2>/dev/null | tee /tmp/big | md5sum | cut -d' ' -f1)
size=$(wc -c < /tmp/big)
r=$(md5sum < /tmp/big | cut -d' ' -f1)
echo "linux: tmpfs file $size bytes, written $w, read $r"
[ "$size" -eq 67108864 ] && [ -n "$w" ] && [ "$w" = "$r" ] && ok linux-tmpfs-64m || ko linux-tmpfs-64m "size $size, $w vs $r"

# A pipeline of five processes.
n=$(seq 1 1000 | grep 7 | sort -r | uniq | wc -l)
[ "$n" -eq 271 ] && ok linux-pipeline || ko linux-pipeline "got $n lines, expected 271"

echo "SUMMARY pass=$pass fail=$fail skip=0"
poweroff -f
