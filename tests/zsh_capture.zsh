# Print the completions an interactive zsh offers for the line $1, once the
# completion script $2 is sourced: zsh runs in a pseudo-terminal (zpty), TAB
# is pressed, and compadd is wrapped to print every match it is given.
# Used by tests/test_completion.py.
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "PROMPT= ; RPROMPT= ; unsetopt zle_bracketed_paste"
zpty -w z "autoload -U compinit && compinit -u -D"
zpty -w z "source ${(q)2}"
zpty -w z 'compadd () {
  [[ ${@[1,-1]} == *-O* || ${@[1,-1]} == *-A* || ${@[1,-1]} == *-D* ]] && { builtin compadd "$@"; return $? }
  typeset -a __hits __dscr
  builtin compadd -A __hits "$@"
  (( $#__hits )) || return 1
  local i; for i in $__hits; do echo "<hit>$i</hit>"; done
  builtin compadd "$@"
}'
zpty -w z "zstyle ':completion:*' list-grouped false; zstyle ':completion:*' insert-tab false; zstyle ':completion:*' menu no"
zpty -w z 'bindkey "^I" complete-word; echo "<ready>"'
zpty -r z line '*<ready>*'
zpty -n -w z "$1"$'\t'
zpty -w z $'\x15echo "<done>"'
local out
zpty -r z out '*<done>*'  # everything up to the marker, however the output is split
print -r -- "$out" | grep -o '<hit>[^<]*</hit>' | sed -e 's/<hit>//' -e 's/<\/hit>//' | sort -u
zpty -d z
