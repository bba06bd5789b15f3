# shellcheck shell=sh
# Finds a JDK 25 (or newer) and exports JAVA_HOME to it. Sourced by ./mvnw and ./pagewire.
#
# Order: $PAGEWIRE_JAVA_HOME, then $JAVA_HOME, then the usual install locations
# (/usr/lib/jvm, /usr/java, /opt, SDKMAN, IntelliJ's ~/.jdks, macOS), then `java` on PATH.
# PAGEWIRE_JDK_SEARCH replaces the default locations (the build's own test uses it).
# A JDK qualifies when its `release` file says JAVA_VERSION="25" or newer.
# With none found it prints what to install and exits 1, before Maven starts.

pagewire_required_jdk=25

pagewire_jdk_major() { # $1 = candidate JDK home; prints its major version or nothing
  [ -x "$1/bin/java" ] && [ -x "$1/bin/javac" ] && [ -f "$1/release" ] || return 0
  sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$1/release" 2>/dev/null | head -n 1
}

pagewire_find_jdk() ( # a subshell: mvnw runs with `set -f`, and we need globs
  set +f
  best="" best_major=0
  # PAGEWIRE_JDK_SEARCH (space-separated globs) replaces the default locations.
  search=${PAGEWIRE_JDK_SEARCH-"/usr/lib/jvm/* /usr/java/* /opt/java/* /opt/jdk* /opt/*jdk* \
    ${SDKMAN_DIR:-$HOME/.sdkman}/candidates/java/* $HOME/.jdks/* /Library/Java/JavaVirtualMachines/*/Contents/Home"}
  for cand in ${PAGEWIRE_JAVA_HOME-} ${JAVA_HOME-} $search; do
    [ -d "$cand" ] || continue
    major=$(pagewire_jdk_major "$cand")
    [ -n "$major" ] || continue
    # An explicitly chosen JDK that qualifies wins outright.
    if [ "$major" -ge "$pagewire_required_jdk" ] && { [ "$cand" = "${PAGEWIRE_JAVA_HOME-}" ] || [ "$cand" = "${JAVA_HOME-}" ]; }; then
      best="$cand"; break
    fi
    # Otherwise prefer the lowest qualifying version: the one we test with.
    if [ "$major" -ge "$pagewire_required_jdk" ] && { [ -z "$best" ] || [ "$major" -lt "$best_major" ]; }; then
      best="$cand"; best_major="$major"
    fi
  done
  if [ -z "$best" ] && command -v java >/dev/null 2>&1; then
    cand=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
    major=$(pagewire_jdk_major "$cand")
    if [ -n "$major" ] && [ "$major" -ge "$pagewire_required_jdk" ]; then best="$cand"; fi
  fi
  printf '%s' "$best"
)

pagewire_jdk=$(pagewire_find_jdk)
if [ -z "$pagewire_jdk" ]; then
  cat >&2 <<MSG
pagewire needs JDK $pagewire_required_jdk or newer, and found none.
  Looked at: \$PAGEWIRE_JAVA_HOME, \$JAVA_HOME (${JAVA_HOME:-unset}), /usr/lib/jvm/*, /usr/java/*, /opt, ~/.sdkman, ~/.jdks.
  Install one, for example:
    Debian/Ubuntu: the Adoptium repository (https://adoptium.net/installation/linux/), then
                   apt-get install temurin-$pagewire_required_jdk-jdk
    SDKMAN:        sdk install java $pagewire_required_jdk-tem
    Any OS:        https://adoptium.net/temurin/releases/?version=$pagewire_required_jdk
  or point PAGEWIRE_JAVA_HOME (or JAVA_HOME) at an installed JDK $pagewire_required_jdk.
MSG
  exit 1
fi
JAVA_HOME="$pagewire_jdk"
export JAVA_HOME
