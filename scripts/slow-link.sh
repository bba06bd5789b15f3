#!/bin/sh
# A slow link between two network namespaces, for measuring the urgent lane where queues build up.
#
#   scripts/slow-link.sh up [tbf|htb] [RATE]   create namespaces pw-src (10.77.0.1) and pw-dst (10.77.0.2)
#                                              joined by a veth pair shaped to RATE (default 1gbit) in both
#                                              directions with a ~1.5 MB bulk queue:
#                                                tbf  one FIFO: every packet waits behind the bulk stream
#                                                htb  as a QoS network would: packets marked DSCP EF (46, what
#                                                     pagewire's urgent lane sends) go to a priority class
#   scripts/slow-link.sh down                  remove both namespaces (idempotent)
#   scripts/slow-link.sh exec src|dst CMD...   run CMD inside a namespace
#   scripts/slow-link.sh show                  print the qdiscs and their counters
#
# Needs root, iproute2 (ip) and tc; netem is not needed. Exit 3 when something is missing, with the reason.
#
# PAGEWIRE_LINK_ID=ID (digits or letters, at most 8) names a link of its own: namespaces pw-src-ID and
# pw-dst-ID, so that several runs (tests of two clones at once) never tear down each other's link.
set -eu

id=${PAGEWIRE_LINK_ID:-}
case "$id" in
  *[!A-Za-z0-9]*) echo "slow-link: PAGEWIRE_LINK_ID must be letters and digits, got '$id'" >&2; exit 2 ;;
esac
if [ ${#id} -gt 8 ]; then echo "slow-link: PAGEWIRE_LINK_ID must be at most 8 characters, got '$id'" >&2; exit 2; fi
SRC=pw-src${id:+-$id}
DST=pw-dst${id:+-$id}
SRC_IF=pws${id:-rc0}
DST_IF=pwd${id:-st0}

need() {
  if [ "$(id -u)" != 0 ]; then echo "slow-link: needs root (network namespaces, tc)" >&2; exit 3; fi
  for c in ip tc; do
    command -v "$c" >/dev/null 2>&1 || { echo "slow-link: '$c' not found (install iproute2)" >&2; exit 3; }
  done
}

shape() { # $1 namespace, $2 interface, $3 mode, $4 rate
  case "$3" in
    tbf)
      # One FIFO of ~1.5 MB at the link rate.
      ip netns exec "$1" tc qdisc add dev "$2" root tbf rate "$4" burst 256kb limit 1500000
      ;;
    htb)
      case "$4" in
        *gbit) mbit=$(( ${4%gbit} * 1000 )) ;;
        *mbit) mbit=${4%mbit} ;;
        *) echo "slow-link: give the rate in mbit or gbit for htb (got '$4')" >&2; exit 2 ;;
      esac
      ip netns exec "$1" tc qdisc add dev "$2" root handle 1: htb default 20
      ip netns exec "$1" tc class add dev "$2" parent 1: classid 1:1 htb rate "$4" ceil "$4" burst 256kb quantum 30000
      # Guaranteed shares: a tenth of the link for the priority class, the rest for bulk; both may borrow up to the link rate.
      ip netns exec "$1" tc class add dev "$2" parent 1:1 classid 1:10 htb rate "$((mbit / 10))mbit" ceil "$4" prio 0 burst 64kb quantum 30000
      ip netns exec "$1" tc class add dev "$2" parent 1:1 classid 1:20 htb rate "$((mbit - mbit / 10))mbit" ceil "$4" prio 1 burst 256kb quantum 30000
      ip netns exec "$1" tc qdisc add dev "$2" parent 1:10 handle 10: pfifo limit 1000
      ip netns exec "$1" tc qdisc add dev "$2" parent 1:20 handle 20: bfifo limit 1500000
      # DSCP EF = 46 -> TOS byte 0xb8 (IPv4); the mask ignores the two ECN bits.
      ip netns exec "$1" tc filter add dev "$2" parent 1: protocol ip prio 1 u32 match ip dsfield 0xb8 0xfc flowid 1:10
      ;;
    *) echo "slow-link: unknown mode '$3' (tbf or htb)" >&2; exit 2 ;;
  esac
}

up() {
  need
  mode=${1:-tbf}
  rate=${2:-1gbit}
  down >/dev/null 2>&1 || true
  ip netns add "$SRC"
  ip netns add "$DST"
  ip link add "$SRC_IF" netns "$SRC" type veth peer name "$DST_IF" netns "$DST"
  ip -n "$SRC" addr add 10.77.0.1/24 dev "$SRC_IF"
  ip -n "$DST" addr add 10.77.0.2/24 dev "$DST_IF"
  for ns in "$SRC" "$DST"; do ip -n "$ns" link set lo up; done
  ip -n "$SRC" link set "$SRC_IF" up
  ip -n "$DST" link set "$DST_IF" up
  # Segmentation offloads would let the qdisc see 64 KB super-packets; shape real-sized packets.
  if command -v ethtool >/dev/null 2>&1; then
    ip netns exec "$SRC" ethtool -K "$SRC_IF" tso off gso off gro off >/dev/null 2>&1 || true
    ip netns exec "$DST" ethtool -K "$DST_IF" tso off gso off gro off >/dev/null 2>&1 || true
  fi
  shape "$SRC" "$SRC_IF" "$mode" "$rate"
  shape "$DST" "$DST_IF" "$mode" "$rate"
  echo "slow-link: $SRC 10.77.0.1 <-> $DST 10.77.0.2, $rate, $mode"
}

down() {
  ip netns del "$SRC" 2>/dev/null || true
  ip netns del "$DST" 2>/dev/null || true
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  exec)
    shift
    case "${1:-}" in src) ns=$SRC ;; dst) ns=$DST ;; *) echo "slow-link: exec src|dst CMD..." >&2; exit 2 ;; esac
    shift
    exec ip netns exec "$ns" "$@"
    ;;
  show)
    for ns in "$SRC" "$DST"; do echo "== $ns"; ip netns exec "$ns" tc -s qdisc show; done ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
