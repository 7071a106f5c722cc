# Map of word-count: prints `WORD\t1` for every word of every input line. A word is a run of ASCII
# letters and digits, lower-cased ("Error:" and "error" are one word, "0x1f" is "0x1f", "e-mail" is two).
# POSIX awk only (mawk, a fresh Debian's awk, runs it as gawk does): the classes are spelled as
# ranges, not [:alnum:], so no awk's locale changes what counts as a letter.
{
    $0 = tolower($0)
    gsub(/[^a-z0-9]+/, " ")
    for (i = 1; i <= NF; i++) print $i "\t" 1
}
