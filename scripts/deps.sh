#!/bin/sh
# deps.sh - install the Debian 12 packages splitmx needs to build, run and test.
# Installs only what is missing; as a non-root user it prints the command.
set -eu

PKGS="build-essential pkg-config libevent-dev libssl-dev libc-ares-dev
libspf2-dev libopendkim-dev libmilter-dev liblmdb-dev check openssl
python3 python3-aiosmtpd python3-dkim swaks postfix dnsmasq-base
opendkim-tools iproute2 libnet-ssleay-perl clang-format clang"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "splitmx: missing Debian packages:$missing" >&2
if [ "$(id -u)" != 0 ]; then
	echo "run: sudo sh -c \"echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections && apt-get install -y$missing\"" >&2
	exit 1
fi
# Postfix asks about its role unless told; splitmx only uses its tools.
echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q $missing || { apt-get update -q && apt-get install -y -q $missing; }
