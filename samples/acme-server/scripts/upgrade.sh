#!/bin/sh
# Acme Server 2.2.0 service pack: the package's scripts, in one file.
#
# The manifest names this file for every script role; pkgrun packages it once per
# role and runs it with PKGRUN_PHASE set to that role. What each role does:
#
# pre-install:
#   Runs before any file of the instance changes. It saves what post-install
#   will change, so that post-install-undo (on a failed install) and
#   post-uninstall (on an uninstall) can put it back:
#
#     var/lib/acme/schema-version  is copied to var/lib/acme/upgrade-2.2.0/
#                                  (or its absence is recorded there).
#
#   If a save already exists (an earlier run, or a reinstall over an installed
#   service pack), it is kept: it holds the state from before 2.2.0.
#
# post-install:
#   Runs after the new files are in place (and before the service starts again):
#
#     var/lib/acme/schema-version  is set to 2.2.0;
#     var/log/acme/upgrade.log     gets one line recording the upgrade.
#
#   Needs the save made by pre-install (var/lib/acme/upgrade-2.2.0/) and adds to
#   it what post-install-undo needs: the exact log line, and whether the log
#   existed before. A second run changes nothing.
#
# post-install-undo:
#   Runs during a rollback (PKGRUN_ACTION=rollback), when the install fails after
#   pre-install or post-install started: it undoes exactly what they did (either
#   may have run partly, or not at all), so the instance is left as it was:
#
#     var/lib/acme/schema-version  gets back the value pre-install saved (or is
#                                  removed if there was none);
#     var/log/acme/upgrade.log     loses the line post-install appended (and is
#                                  removed if post-install created it and it is
#                                  now empty);
#     var/lib/acme/upgrade-2.2.0/  (the save) is removed, and so are the
#                                  directories the scripts created, when empty.
#
#   With no save, there is nothing to undo. A second run changes nothing.
#
# pre-uninstall:
#   Runs before an uninstall changes anything. It changes nothing itself: it
#   checks that the schema version can be put back, and refuses (exit 1, so the
#   uninstall stops before any change) when the schema was moved past 2.2.0 after
#   this service pack was installed, e.g. by a later update or `acme-migrate`.
#
# post-uninstall:
#   Runs after an uninstall put the previous files back:
#
#     var/lib/acme/schema-version  gets back the value pre-install saved (or is
#                                  removed if there was none);
#     var/log/acme/upgrade.log     loses the line post-install appended (and is
#                                  removed if post-install created it and it is
#                                  now empty): an uninstall puts the instance back
#                                  exactly as it was, and pkgrun's own logs in
#                                  .pkgrun/logs/ keep the history;
#     var/lib/acme/upgrade-2.2.0/  (the save) is removed, and so are the
#                                  directories the scripts created, when empty.
#
#   With no save, there is nothing to do. A second run changes nothing.
#
# Environment (set by pkgrun for every script):
#   PKGRUN_TARGET           absolute path of the target instance directory; also
#                           the working directory. Required: the script refuses
#                           to run without it.
#   PKGRUN_PACKAGE_ID       this package's id (acme-server-2.2.0-sp1)
#   PKGRUN_PACKAGE_VERSION  the version the package brings (2.2.0)
#   PKGRUN_PACKAGE_BUILD    the package's build number (2200)
#   PKGRUN_PRODUCT          the product id (acme-server)
#   PKGRUN_PRODUCT_VERSION  the installed product version before the action
#   PKGRUN_ACTION           install, uninstall or rollback
#   PKGRUN_PHASE            this script's role (pre-install, post-install, ...)
#   PKGRUN_LOG              the installer's log file (the script's output goes
#                           there too; the script does not write to it)
#
# The script touches nothing outside $PKGRUN_TARGET: it works with relative
# paths from there, and refuses to write through a symbolic link that could
# lead elsewhere. It is idempotent: running it twice is the same as once.
set -eu

phase=${PKGRUN_PHASE:-}
case $phase in
    pre-install | post-install | post-install-undo | pre-uninstall | post-uninstall) ;;
    *)
        echo "upgrade.sh: PKGRUN_PHASE is '$phase'; pkgrun sets it to the script's role" >&2
        exit 1
        ;;
esac

fail() {
    echo "$phase: $*" >&2
    exit 1
}

if [ -z "${PKGRUN_TARGET:-}" ]; then
    fail "PKGRUN_TARGET is not set: run this script through pkgrun, or set PKGRUN_TARGET to the instance directory"
fi
case $PKGRUN_TARGET in
    /*) ;;
    *) fail "PKGRUN_TARGET must be an absolute path, not '$PKGRUN_TARGET'" ;;
esac
[ -d "$PKGRUN_TARGET" ] || fail "PKGRUN_TARGET '$PKGRUN_TARGET' is not a directory"
cd "$PKGRUN_TARGET"

package_id=${PKGRUN_PACKAGE_ID:-acme-server-2.2.0-sp1}
package_version=${PKGRUN_PACKAGE_VERSION:-2.2.0}
package_build=${PKGRUN_PACKAGE_BUILD:-2200}
product=${PKGRUN_PRODUCT:-acme-server}
product_version=${PKGRUN_PRODUCT_VERSION:-unknown}
action=${PKGRUN_ACTION:-manual run}

# What the scripts manage, relative to the target.
schema=var/lib/acme/schema-version
log=var/log/acme/upgrade.log
# What pre-install saved, kept until uninstall (or removed by post-install-undo).
save=var/lib/acme/upgrade-2.2.0

for path in var var/lib var/lib/acme var/log var/log/acme "$schema" "$log" "$save" \
    "$save/schema-version" "$save/schema-version.absent" "$save/created-dirs" \
    "$save/log-line" "$save/upgrade.log.absent" "$save/uninstall-line"; do
    if [ -L "$path" ]; then
        fail "$PKGRUN_TARGET/$path is a symbolic link; refusing to write through it (it may lead outside the target)"
    fi
done

# Prints the directories, outermost first, that `mkdir -p $1` would create.
missing_dirs() {
    _path=
    _IFS=$IFS
    IFS=/
    for _part in $1; do
        _path=${_path:+$_path/}$_part
        [ -d "$_path" ] || echo "$_path"
    done
    IFS=$_IFS
}

# Creates directory $1 (and its parents), recording in $save/created-dirs the
# ones that did not exist, so that an undo can remove exactly those.
make_dir() {
    _new=$(missing_dirs "$1")
    [ -n "$_new" ] || return 0
    mkdir -p "$1"
    mkdir -p "$save"
    echo "$_new" >> "$save/created-dirs"
    echo "$phase: created" $_new
}

# Writes $2 into file $1 atomically.
write_file() {
    rm -f "$1.tmp"
    printf '%s\n' "$2" > "$1.tmp"
    mv -f "$1.tmp" "$1"
}

# Removes the files kept in $save, then the directories the scripts created
# (innermost first; a directory that is not empty is kept).
clean_save() {
    _created=
    [ -f "$save/created-dirs" ] && _created=$(sed '1!G;h;$!d' "$save/created-dirs")
    for _f in schema-version schema-version.absent log-line upgrade.log.absent uninstall-line created-dirs; do
        rm -f "$save/$_f"
    done
    for _d in $_created "$save"; do
        if [ -d "$_d" ]; then
            if rmdir "$_d" 2>/dev/null; then
                echo "$phase: removed directory $_d"
            else
                echo "$phase: kept directory $_d (not empty)"
            fi
        fi
    done
}

# Removes the line post-install appended to the upgrade log (and the log, if
# post-install created it and nothing else was written to it since).
remove_log_line() {
    if [ -f "$save/log-line" ] && [ -f "$log" ]; then
        line=$(cat "$save/log-line")
        if grep -qxF -- "$line" "$log"; then
            status=0
            rm -f "$log.tmp"
            grep -vxF -- "$line" "$log" > "$log.tmp" || status=$?
            [ "$status" -le 1 ] || fail "could not filter $log"
            mv -f "$log.tmp" "$log"
            echo "$phase: removed from $log: $line"
        fi
        if [ -f "$save/upgrade.log.absent" ] && [ ! -s "$log" ]; then
            rm -f "$log"
            echo "$phase: removed $log (post-install created it)"
        fi
    fi
}

# Puts back the schema version pre-install saved.
restore_schema() {
    if [ -f "$save/schema-version" ]; then
        _previous=$(cat "$save/schema-version")
        if [ -f "$schema" ] && [ "$(cat "$schema")" = "$_previous" ]; then
            echo "$phase: $schema is already $_previous"
        else
            write_file "$schema" "$_previous"
            echo "$phase: restored $schema to $_previous"
        fi
    elif [ -f "$save/schema-version.absent" ]; then
        if [ -e "$schema" ]; then
            rm -f "$schema"
            echo "$phase: removed $schema (there was none before $package_version)"
        fi
    fi
}

pre_install() {
    echo "$phase: $package_id $package_version (build $package_build), $action of $product $product_version in $PKGRUN_TARGET"

    if [ -f "$save/schema-version" ] || [ -f "$save/schema-version.absent" ]; then
        echo "$phase: the state before $package_version is already saved in $save; keeping it"
        exit 0
    fi

    make_dir "$save"
    if [ -f "$schema" ]; then
        rm -f "$save/schema-version.tmp"
        cp "$schema" "$save/schema-version.tmp"
        mv -f "$save/schema-version.tmp" "$save/schema-version"
        echo "$phase: saved $schema ($(cat "$schema")) to $save/schema-version"
    else
        : > "$save/schema-version.absent"
        echo "$phase: no $schema yet; recorded its absence in $save"
    fi
}

post_install() {
    echo "$phase: $package_id $package_version (build $package_build), $action of $product $product_version in $PKGRUN_TARGET"

    if [ ! -f "$save/schema-version" ] && [ ! -f "$save/schema-version.absent" ]; then
        fail "$save holds no saved schema version: pre-install did not run, so this change could not be undone; stopping"
    fi
    if [ -f "$save/schema-version" ]; then
        previous=$(cat "$save/schema-version")
    else
        previous=none
    fi

    # 1. The upgrade log: one line, appended once.
    if [ -f "$save/log-line" ] && [ -f "$log" ] && grep -qxF -- "$(cat "$save/log-line")" "$log"; then
        echo "$phase: $log already records this upgrade"
    else
        make_dir var/log/acme
        [ -e "$log" ] || : > "$save/upgrade.log.absent"
        line="$(date -u +%Y-%m-%dT%H:%M:%SZ) $package_id: $product $product_version -> $package_version (build $package_build), schema-version $previous -> 2.2.0"
        write_file "$save/log-line" "$line"
        printf '%s\n' "$line" >> "$log"
        echo "$phase: appended to $log: $line"
    fi

    # 2. The schema version.
    if [ -f "$schema" ] && [ "$(cat "$schema")" = "2.2.0" ]; then
        echo "$phase: $schema is already 2.2.0"
    else
        make_dir var/lib/acme
        write_file "$schema" "2.2.0"
        echo "$phase: set $schema to 2.2.0 (was $previous)"
    fi
}

post_install_undo() {
    echo "$phase: undoing $package_id $package_version (build $package_build) in $PKGRUN_TARGET"

    if [ ! -d "$save" ]; then
        echo "$phase: no $save: nothing to undo"
        exit 0
    fi

    # 1. The schema version.
    restore_schema

    # 2. The upgrade log line.
    remove_log_line

    # 3. The save, and the directories the scripts created.
    clean_save
}

pre_uninstall() {
    echo "$phase: $package_id $package_version (build $package_build), $action of $product $product_version in $PKGRUN_TARGET"

    current=none
    [ -f "$schema" ] && current=$(cat "$schema")
    case $current in
        2.2.0 | none) ;;
        *)
            if [ ! -f "$save/schema-version" ] || [ "$(cat "$save/schema-version")" != "$current" ]; then
                fail "$schema is $current, not 2.2.0: the schema changed after $package_id was installed; restore the database backup or run 'bin/acme-migrate down VERSION' first"
            fi
            ;;
    esac

    if [ -f "$save/schema-version" ]; then
        echo "$phase: $schema is $current; post-uninstall will restore $(cat "$save/schema-version")"
    elif [ -f "$save/schema-version.absent" ]; then
        echo "$phase: $schema is $current; post-uninstall will remove it (there was none before $package_version)"
    else
        echo "$phase: warning: no saved schema version in $save; $schema will be left at $current (use bin/acme-migrate down VERSION)"
    fi
}

post_uninstall() {
    echo "$phase: $package_id $package_version (build $package_build), $action of $product $product_version in $PKGRUN_TARGET"

    if [ ! -d "$save" ]; then
        echo "$phase: no $save: nothing to do"
        exit 0
    fi

    previous=none
    [ -f "$save/schema-version" ] && previous=$(cat "$save/schema-version")

    # 1. The upgrade log line post-install appended.
    remove_log_line

    # 2. The schema version.
    restore_schema

    # 3. The save, and the directories the scripts created.
    clean_save
}

case $phase in
    pre-install) pre_install ;;
    post-install) post_install ;;
    post-install-undo) post_install_undo ;;
    pre-uninstall) pre_uninstall ;;
    post-uninstall) post_uninstall ;;
esac
