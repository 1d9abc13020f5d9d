#!/bin/sh
# /init of the linux-domu-boot scenario: Debian's cloud kernel, booted as a
# domU, reaches user space and checks a few things (DESIGN 4.4 result lines).
PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
pass=0; fail=0
check() { # name, condition command...
    name=$1; shift
    if "$@"; then echo "RESULT $name PASS"; pass=$((pass + 1)); else echo "RESULT $name FAIL: $*"; fail=$((fail + 1)); fi
}
echo "linux: /init reached"
check linux-hypervisor-type [ "$(cat /sys/hypervisor/type 2>/dev/null)" = xen ]
mem_kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo)
echo "linux: MemTotal $mem_kb kB"
# Given 256 MiB: the kernel keeps some, but most is there.
check linux-meminfo [ "$mem_kb" -gt 180000 ] && [ "$mem_kb" -le 262144 ]
i=0; while [ $i -lt 100 ]; do /bin/true || break; i=$((i + 1)); done
check linux-fork-exec-100 [ $i -eq 100 ]
words=$(echo "a b c d" | tr ' ' '\n' | sort -r | head -2 | wc -l)
check linux-pipeline [ "$words" -eq 2 ]
echo "SUMMARY pass=$pass fail=$fail skip=0"
poweroff -f
