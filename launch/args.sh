# shellcheck shell=bash
# What the shell entry points (launch/*, scripts/main_job.sh, scripts/finetune_repo.sh) check and quote before they
# pass a value on: whole-number knobs from the environment, and paths as Hydra override values. Sourced, never run.

# True when VALUE is a whole number >= MIN (digits only: bash arithmetic reads 08 as a bad octal number, and a name
# or an expression in $(( )) would be evaluated).
args_is_count() {
    [[ "$1" =~ ^[0-9]{1,15}$ ]] && (( 10#$1 >= $2 ))
}

# Exit 2 unless the environment variable NAME, when set and not empty, is a whole number >= MIN; the message starts
# with WHO and names the variable, its value and the fix. A valid value is rewritten without leading zeros.
args_require_count() {
    local name="$1" min="$2" who="$3" value="${!1:-}"
    [ -n "$value" ] || return 0
    if ! args_is_count "$value" "$min"; then
        echo "$who: $name='$value' is not a whole number >= $min: set it to one, or unset it for the default" >&2
        exit 2
    fi
    printf -v "$name" '%d' "$(( 10#$value ))"
}

# VALUE as one single-quoted Hydra override value that Hydra and OmegaConf read back unchanged: any character a path
# may hold (spaces, commas, = ~ # [ ( ` and non-ASCII, all of which break an unquoted value), with a quote escaped,
# the backslashes before a quote or the end doubled, and ${ escaped so that it is not an interpolation.
hydra_quote() {
    local s="$1" out="" c n=0 i
    for (( i = 0; i < ${#s}; i++ )); do
        c="${s:i:1}"
        if [ "$c" = "\\" ]; then
            n=$(( n + 1 ))
            continue
        fi
        if [ "$c" = "'" ]; then
            _args_backslashes $(( 2 * n ))
            out+="$_ARGS_BS\\'"
        elif [ "$c" = '$' ] && [ "${s:i+1:1}" = '{' ]; then
            _args_backslashes $(( 2 * n ))
            out+="$_ARGS_BS\\\$"
        else
            _args_backslashes "$n"
            out+="$_ARGS_BS$c"
        fi
        n=0
    done
    _args_backslashes $(( 2 * n ))
    printf "'%s%s'" "$out" "$_ARGS_BS"
}

# The value of a quoted Hydra override value ('...' or "..."): the inverse of hydra_quote. Unquoted values unchanged.
hydra_unquote() {
    local v="$1" q inner out="" c n=0 i
    q="${v:0:1}"
    if [ "${#v}" -lt 2 ] || { [ "$q" != "'" ] && [ "$q" != '"' ]; } || [ "${v: -1}" != "$q" ]; then
        printf '%s' "$v"
        return
    fi
    inner="${v:1:${#v}-2}"
    for (( i = 0; i < ${#inner}; i++ )); do
        c="${inner:i:1}"
        if [ "$c" = "\\" ]; then
            n=$(( n + 1 ))
            continue
        fi
        if [ "$c" = "$q" ] || { [ "$c" = '$' ] && [ "${inner:i+1:1}" = '{' ]; }; then
            _args_backslashes $(( n / 2 ))
            out+="$_ARGS_BS$c"
        else
            _args_backslashes "$n"
            out+="$_ARGS_BS$c"
        fi
        n=0
    done
    _args_backslashes $(( n / 2 ))
    printf '%s%s' "$out" "$_ARGS_BS"
}

# Sets _ARGS_BS to N backslashes (no subshell: these loops run once per character).
_args_backslashes() {
    printf -v _ARGS_BS '%*s' "$1" ''
    _ARGS_BS="${_ARGS_BS// /\\}"
}
