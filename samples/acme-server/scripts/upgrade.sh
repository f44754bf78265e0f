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
#   may have run partly, or not at all, or have been killed at any line), so the
#   instance is left as it was:
#
#     var/lib/acme/schema-version  gets back the value pre-install saved (or is
#                                  removed if there was none);
#     var/log/acme/upgrade.log     loses the line post-install appended (and is
#                                  removed if post-install created it and it is
#                                  now empty);
#     var/lib/acme/upgrade-2.2.0/  (the save) is removed, and so are the
#                                  directories the scripts created, when empty.
#
#   With no save and no record of created directories, there is nothing to undo.
#   A second run changes nothing.
#
# pre-uninstall:
#   Runs before an uninstall changes anything. It changes nothing itself (apart
#   from removing what a killed run left, below): it checks that the schema
#   version can be put back, and refuses (exit 1, so the uninstall stops before
#   any change) when the schema was moved past 2.2.0 after this service pack was
#   installed, e.g. by a later update or `acme-migrate`.
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
# lead elsewhere.
#
# Interruptions: this script is written to be copied.
#   A script can be killed at any instant: by its timeout, or because the pkgrun
#   run that started it died (kill -9, power cut); pkgrun then kills the script
#   together with everything it started. The next pkgrun run on the target
#   recovers: after an interrupted install whose scripts had started, it runs
#   post-install-undo (with PKGRUN_ACTION=rollback), so post-install-undo must
#   cope with pre-install or post-install killed at any line; an interrupted
#   uninstall whose post-uninstall had started is compensated by running
#   pre-install and post-install again. Hence these rules, which every role
#   follows:
#
#   - Every role is idempotent: running it twice is the same as running it once,
#     and running it again after it was killed finishes what the killed run did.
#   - Every file is written to a temporary file beside it and renamed over it
#     (rename is atomic): a file is the old one or the new one, never half
#     written. Appending to the upgrade log copies the log, appends to the copy
#     and renames the copy over the log, so a kill never leaves half a line.
#     The temporary copy starts as a copy of the file, so the file keeps its mode.
#   - Temporary files are named .upgrade-tmp.NAME, beside the file NAME they
#     replace, and every role first removes those that a killed run left (in
#     the target directory, var/lib/acme, var/log/acme and the save). So once
#     the next role, or the compensating post-install-undo, has run, no
#     temporary file is left, whenever the kill came.
#   - Directories are recorded before they are created (write-ahead), in
#     var/lib/acme/upgrade-2.2.0/created-dirs. While the save directory itself
#     does not exist yet (pre-install creating it and its parents), and while
#     post-install-undo or post-uninstall removes it, the record is kept in
#     .acme-upgrade-2.2.0.created-dirs in the target directory instead; every
#     role moves it back into the save when the save exists. So an undo removes
#     exactly the directories the scripts created, even if a run was killed
#     between the record and the mkdir (a recorded directory that does not
#     exist is skipped), and a directory is never recorded after the fact.
#   - The save's own record is removed last, after the directories it lists.
#   - Functions hold one command per line (no `case`, no line continuation), so
#     that tests/sample_scripts.rs can kill a role after any line of them, and
#     checks all of the above for every role killed at every step.
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
# The record of created directories while the save cannot hold it (see the top).
pending=.acme-upgrade-2.2.0.created-dirs
# The name prefix of every temporary file.
tmp_prefix=.upgrade-tmp.

for path in var var/lib var/lib/acme var/log var/log/acme "$schema" "$log" "$save" "$pending" \
    "$save/schema-version" "$save/schema-version.absent" "$save/created-dirs" \
    "$save/log-line" "$save/upgrade.log.absent" "$save/uninstall-line"; do
    if [ -L "$path" ]; then
        fail "$PKGRUN_TARGET/$path is a symbolic link; refusing to write through it (it may lead outside the target)"
    fi
done

# Prints the temporary file for file $1: beside it, so that renaming it over $1
# is atomic, and named with the prefix that tells leftovers apart.
tmp_for() {
    if [ "${1%/*}" = "$1" ]; then echo "$tmp_prefix$1"; else echo "${1%/*}/$tmp_prefix${1##*/}"; fi
}

# Removes the temporary files a killed run left. Every role starts with this.
remove_leftovers() {
    for _dir in . var/lib/acme var/log/acme "$save"; do
        for _tmp in "$_dir/$tmp_prefix"*; do
            if [ -e "$_tmp" ] || [ -L "$_tmp" ]; then
                rm -f -- "$_tmp"
                echo "$phase: removed $_tmp, left by an interrupted run"
            fi
        done
    done
}

# Starts replacing file $1: $_tmp is a fresh temporary file beside it, a copy of
# $1 when $1 exists (so that $1 keeps its mode), else empty.
begin_replace() {
    _tmp=$(tmp_for "$1")
    rm -f -- "$_tmp"
    if [ -f "$1" ]; then cp -p -- "$1" "$_tmp"; else : > "$_tmp"; fi
}

# Ends it: the rename, the only step that changes $1.
end_replace() {
    mv -f -- "$_tmp" "$1"
}

# Replaces file $1 with the text $2 and a newline.
write_file() {
    begin_replace "$1"
    printf '%s\n' "$2" > "$_tmp"
    end_replace "$1"
}

# Appends the text $2 and a newline to file $1 (creating it): copy, append, rename.
append_line() {
    begin_replace "$1"
    printf '%s\n' "$2" >> "$_tmp"
    end_replace "$1"
}

# Removes every line equal to $2 from file $1.
remove_line() {
    begin_replace "$1"
    _status=0
    grep -vxF -- "$2" "$1" > "$_tmp" || _status=$?
    [ "$_status" -le 1 ] || fail "could not filter $1"
    end_replace "$1"
}

# Makes file $2 a copy of file $1: the same bytes and mode.
copy_file() {
    _tmp=$(tmp_for "$2")
    rm -f -- "$_tmp"
    cp -p -- "$1" "$_tmp"
    mv -f -- "$_tmp" "$2"
}

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

# Prints the lines of standard input (directories) that no record lists.
unrecorded() {
    if [ -f "$save/created-dirs" ]; then _lines=$(grep -vxF -f "$save/created-dirs" || true); else _lines=$(cat); fi
    if [ -f "$pending" ]; then printf '%s\n' "$_lines" | grep -vxF -f "$pending" || true; else printf '%s\n' "$_lines"; fi
}

# Creates directory $1 and its parents. Write-ahead: the directories that are
# missing are recorded first (in the save, or in $pending while the save does
# not exist), then created. One that a killed run recorded is not recorded twice.
make_dir() {
    _missing=$(missing_dirs "$1")
    if [ -z "$_missing" ]; then return 0; fi
    _new=$(printf '%s\n' "$_missing" | unrecorded)
    if [ -z "$_new" ]; then :; elif [ -d "$save" ]; then append_line "$save/created-dirs" "$_new"; else append_line "$pending" "$_new"; fi
    mkdir -p -- "$1"
    echo "$phase:" created $_missing
}

# Moves the directories recorded in file $1 into record file $2, each listed
# once, and removes $1. When $2 does not exist this is one atomic rename; else a
# kill between the append and the removal leaves $1 to be moved again, which
# adds nothing twice.
move_record() {
    if [ ! -f "$1" ]; then return 0; fi
    if [ ! -f "$2" ]; then mv -f -- "$1" "$2"; return 0; fi
    _more=$(grep -vxF -f "$2" "$1" || true)
    if [ -n "$_more" ]; then append_line "$2" "$_more"; fi
    rm -f -- "$1"
}

# Moves the record in $pending into the save, once the save exists.
adopt_pending() {
    if [ -d "$save" ]; then move_record "$pending" "$save/created-dirs"; fi
}

# Removes the save, then the directories the scripts created (innermost first;
# one that is not empty is kept). The record of those directories is moved out
# of the save first (back to $pending) and removed last, so that a kill at any
# point leaves a record of what is still to be removed.
clean_save() {
    for _f in schema-version schema-version.absent log-line upgrade.log.absent uninstall-line; do
        rm -f -- "$save/$_f"
    done
    move_record "$save/created-dirs" "$pending"
    _created=
    if [ -f "$pending" ]; then _created=$(sed '1!G;h;$!d' "$pending"); fi
    for _d in "$save" $_created; do
        if [ -d "$_d" ]; then
            if rmdir -- "$_d" 2>/dev/null; then echo "$phase: removed directory $_d"; else echo "$phase: kept directory $_d (not empty)"; fi
        fi
    done
    rm -f -- "$pending"
}

# Removes the line post-install appended to the upgrade log (and the log, if
# post-install created it and nothing else was written to it since).
remove_log_line() {
    if [ ! -f "$save/log-line" ] || [ ! -f "$log" ]; then return 0; fi
    line=$(cat "$save/log-line")
    if grep -qxF -- "$line" "$log"; then
        remove_line "$log" "$line"
        echo "$phase: removed from $log: $line"
    fi
    if [ -f "$save/upgrade.log.absent" ] && [ ! -s "$log" ]; then
        rm -f -- "$log"
        echo "$phase: removed $log (post-install created it)"
    fi
}

# Puts back the schema version pre-install saved: the same bytes and mode.
restore_schema() {
    if [ -f "$save/schema-version" ]; then
        if [ -f "$schema" ] && cmp -s "$save/schema-version" "$schema"; then
            echo "$phase: $schema is already $(cat "$schema")"
        else
            copy_file "$save/schema-version" "$schema"
            echo "$phase: restored $schema to $(cat "$schema")"
        fi
    elif [ -f "$save/schema-version.absent" ] && [ -e "$schema" ]; then
        rm -f -- "$schema"
        echo "$phase: removed $schema (there was none before $package_version)"
    fi
}

pre_install() {
    echo "$phase: $package_id $package_version (build $package_build), $action of $product $product_version in $PKGRUN_TARGET"

    if [ -f "$save/schema-version" ] || [ -f "$save/schema-version.absent" ]; then
        echo "$phase: the state before $package_version is already saved in $save; keeping it"
        return 0
    fi

    make_dir "$save"
    adopt_pending
    if [ -f "$schema" ]; then
        copy_file "$schema" "$save/schema-version"
        echo "$phase: saved $schema ($(cat "$schema")) to $save/schema-version"
    else
        write_file "$save/schema-version.absent" "there was no $schema before $package_version"
        echo "$phase: no $schema yet; recorded its absence in $save"
    fi
}

post_install() {
    echo "$phase: $package_id $package_version (build $package_build), $action of $product $product_version in $PKGRUN_TARGET"

    if [ ! -f "$save/schema-version" ] && [ ! -f "$save/schema-version.absent" ]; then
        fail "$save holds no saved schema version: pre-install did not run, so this change could not be undone; stopping"
    fi
    previous=none
    if [ -f "$save/schema-version" ]; then previous=$(cat "$save/schema-version"); fi

    # 1. The upgrade log: one line, appended once. What the undo needs (whether
    # the log existed, the line) is saved before the log changes.
    if [ -f "$save/log-line" ] && [ -f "$log" ] && grep -qxF -- "$(cat "$save/log-line")" "$log"; then
        echo "$phase: $log already records this upgrade"
    else
        if [ ! -e "$log" ]; then write_file "$save/upgrade.log.absent" "there was no $log before $package_version"; fi
        line="$(date -u +%Y-%m-%dT%H:%M:%SZ) $package_id: $product $product_version -> $package_version (build $package_build), schema-version $previous -> 2.2.0"
        write_file "$save/log-line" "$line"
        make_dir var/log/acme
        append_line "$log" "$line"
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

    if [ ! -d "$save" ] && [ ! -f "$pending" ]; then
        echo "$phase: no $save: nothing to undo"
        return 0
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
    if [ -f "$schema" ]; then current=$(cat "$schema"); fi
    if [ "$current" != 2.2.0 ] && [ "$current" != none ]; then
        if [ ! -f "$save/schema-version" ] || [ "$(cat "$save/schema-version")" != "$current" ]; then
            fail "$schema is $current, not 2.2.0: the schema changed after $package_id was installed; restore the database backup or run 'bin/acme-migrate down VERSION' first"
        fi
    fi

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

    if [ ! -d "$save" ] && [ ! -f "$pending" ]; then
        echo "$phase: no $save: nothing to do"
        return 0
    fi

    # 1. The upgrade log line post-install appended.
    remove_log_line

    # 2. The schema version.
    restore_schema

    # 3. The save, and the directories the scripts created.
    clean_save
}

# What a killed run left: its temporary files, and a record of created
# directories outside the save.
remove_leftovers
adopt_pending

case $phase in
    pre-install) pre_install ;;
    post-install) post_install ;;
    post-install-undo) post_install_undo ;;
    pre-uninstall) pre_uninstall ;;
    post-uninstall) post_uninstall ;;
esac
