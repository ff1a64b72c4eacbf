#!/bin/sh
# /init of the drorch lab guest (busybox). Kernel command line switches:
#   disk=1        load virtio_blk; persist "DISKCOUNTER n" in sector 0 of /dev/vda (then
#                 print "ACKED n") and resume counting from it after a failover
#   dirty=MiB     rewrite a MiB-sized tmpfs file in a loop (a guest that dirties memory fast)
#   wdt=1         arm softdog (10 s) and feed it every heartbeat; hang=N stops feeding after N
#   hb=SECONDS    heartbeat period (default 1)
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs -o size=100m tmp /tmp
CMD=$(cat /proc/cmdline)
# ACPI power button -> orderly poweroff, so a graceful shutdown works (virsh shutdown)
insmod /mod/button.ko 2>/dev/null; insmod /mod/evdev.ko 2>/dev/null
mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\necho "LABVM POWER BUTTON: powering off"\npoweroff -f\n' > /etc/acpi/PWRF/00000080
chmod +x /etc/acpi/PWRF/00000080
i=0; while [ ! -e /dev/input/event0 ] && [ $i -lt 20 ]; do sleep 0.05; i=$((i+1)); done
acpid -d -c /etc/acpi &  # foreground: the daemon mode needs /var/log
echo "ACPI power button: $(ls /dev/input 2>&1 | tr '\n' ' ')"
arg() { echo "$CMD" | tr ' ' '\n' | grep "^$1=" | head -n 1 | cut -d= -f2; }
n=0
if [ "$(arg disk)" = 1 ]; then
  for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
    insmod /mod/$m.ko 2>/dev/null
  done
  i=0; while [ ! -b /dev/vda ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done
  if [ -b /dev/vda ]; then
    LAST=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | tr -d '\000' | head -c 40)
    echo "DISK FOUND last='$LAST'"
    case "$LAST" in DISKCOUNTER*) n=${LAST#DISKCOUNTER };; esac
  else
    echo "DISK MISSING"
  fi
fi
WD=""
if [ "$(arg wdt)" = 1 ]; then
  insmod /mod/watchdog.ko; insmod /mod/softdog.ko soft_margin=10 && WD=/dev/watchdog
  echo "WATCHDOG armed=$WD"
fi
HANG=$(arg hang)
HB=$(arg hb); [ -n "$HB" ] || HB=1
DIRTY=$(arg dirty)
if [ -n "$DIRTY" ]; then
  ( awk -v mib="$DIRTY" 'BEGIN { n = mib * 1024 * 16; s = sprintf("%60s", ""); for (x = 0; ; x++) for (i = 0; i < n; i++) a[i] = s x }' ) &
  echo "DIRTYING ${DIRTY}MiB"
fi
echo "LABVM BOOTED uptime=$(cut -d' ' -f1 /proc/uptime) start_counter=$n"
i=0
while true; do
  n=$((n+1)); i=$((i+1))
  echo "HEARTBEAT $n uptime=$(cut -d' ' -f1 /proc/uptime)"
  # the counter is flushed to the disk (fsync: an NBD FLUSH) and only then logged as
  # ACKED: every ACKED value is one the disk acknowledged, so lost ones can be counted
  if [ -b /dev/vda ] && printf "DISKCOUNTER %s" $n | dd of=/dev/vda bs=512 conv=sync,fsync 2>/dev/null; then
    echo "ACKED $n"
  fi
  if [ -n "$WD" ] && { [ -z "$HANG" ] || [ $i -lt "$HANG" ]; }; then echo 1 > $WD; fi
  sleep "$HB"
done
