"""`make bench`: performance goals as rates and ratios against an anchor measured in the same run."""

print("no benchmarks yet")
