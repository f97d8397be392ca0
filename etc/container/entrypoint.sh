#!/bin/sh
# fedxmpp's container entrypoint (see Containerfile and README.rst, "Container").
#
#   (no arguments) | serve   run the server in the foreground (twistd -n), as PID 1
#   COMMAND [ARGS...]        an admin command: fedxmpp --config CONFIG COMMAND ARGS
#
# The configuration is FEDXMPP_CONFIG (default /etc/fedxmpp/fedxmpp.toml, e.g. a
# mounted file).  Without one, FEDXMPP_DOMAINS (comma-separated) and optionally
# FEDXMPP_ADMINS (comma-separated bare JIDs) describe a server on the defaults,
# whose configuration is written once to FEDXMPP_DATA_DIR/fedxmpp.toml (default
# /var/lib/fedxmpp, the container's volume) and kept from then on.
set -eu

die() {
    echo "fedxmpp-entrypoint: $*" >&2
    exit 64
}

# A TOML array of quoted strings from a comma-separated list; each item may only
# hold the characters of a domain or a bare JID.
toml_list() {
    what=$1
    list=$2
    out=""
    old_ifs=$IFS
    IFS=,
    for item in $list; do
        case "$item" in
            "" | *[!A-Za-z0-9.@_-]*) IFS=$old_ifs; die "$what: '$item' is not a domain or bare JID" ;;
        esac
        out="${out:+$out, }\"$item\""
    done
    IFS=$old_ifs
    [ -n "$out" ] || die "$what is empty"
    printf '[%s]' "$out"
}

data_dir=${FEDXMPP_DATA_DIR:-/var/lib/fedxmpp}
config=${FEDXMPP_CONFIG:-/etc/fedxmpp/fedxmpp.toml}
if [ ! -e "$config" ]; then
    generated="$data_dir/fedxmpp.toml"
    if [ ! -e "$generated" ]; then
        [ -n "${FEDXMPP_DOMAINS:-}" ] ||
            die "no configuration at $config: mount one there, or set FEDXMPP_DOMAINS (e.g. example.org)"
        case "$data_dir" in
            /*) ;;
            *) die "FEDXMPP_DATA_DIR must be an absolute path" ;;
        esac
        case "$data_dir" in
            *[\"\\]*) die "FEDXMPP_DATA_DIR: quotes and backslashes are not allowed" ;;
        esac
        domains=$(toml_list FEDXMPP_DOMAINS "$FEDXMPP_DOMAINS")
        admins="[]"
        [ -z "${FEDXMPP_ADMINS:-}" ] || admins=$(toml_list FEDXMPP_ADMINS "$FEDXMPP_ADMINS")
        mkdir -p "$data_dir"
        umask 077
        cat > "$generated.new" <<TOML
# Written by the container's entrypoint from FEDXMPP_DOMAINS and FEDXMPP_ADMINS
# on first start; edit it freely (etc/fedxmpp.toml documents every key).
[server]
domains = $domains
admins = $admins
data_dir = "$data_dir"
TOML
        mv "$generated.new" "$generated"
    fi
    config=$generated
fi

if [ $# -eq 0 ] || [ "$1" = serve ]; then
    [ $# -eq 0 ] || shift
    exec twistd --nodaemon --pidfile= fedxmpp --config "$config" "$@"
fi
exec fedxmpp --config "$config" "$@"
