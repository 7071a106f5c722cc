# Reduce of word-count: its stdin is `WORD\tCOUNT` lines sorted by WORD; it prints `WORD\tTOTAL` once per
# run of equal words. It reads what it prints and a sum of sums is the sum, so it also serves as the
# combiner ("combine": true).
BEGIN { FS = "\t" }
{
    # `$1 ""` makes the word a string: awk compares two numeric-looking fields as numbers, and "007"
    # and "7" (or "1e3" and "1000") are different words.
    word = $1 ""
    if (NR > 1 && word != current) print current "\t" total
    if (NR == 1 || word != current) { current = word; total = 0 }
    total += $2
}
END { if (NR > 0) print current "\t" total }
