# A perl workload for the LD_PRELOAD test: a large hash, sorting by value, string building,
# regular expressions, arrays of arrays and an MD5 over the results (Digest::MD5 is core perl).
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);

my %table;
my $x = 42;
for my $i (0 .. 299_999) {
  $x = ($x * 1103515245 + 12345) % 2147483648;
  $table{sprintf("key%09d", $x)} = [$i, $x % 100_003, "v" x ($x % 50)];
}
my @sorted = sort { $table{$a}[1] <=> $table{$b}[1] or $a cmp $b } keys %table;
my $digest = Digest::MD5->new;
for (my $i = 0; $i < @sorted; $i += 101) {
  my $k = $sorted[$i];
  $digest->add(join(":", $k, @{ $table{$k} }), ";");
}
my $text = join(" ", map { "word" . ($_ * 7 % 5000) } 0 .. 199_999);
my %count;
$count{$1}++ while $text =~ /word(\d+)/g;
(my $upper = $text) =~ s/word(\d)/WORD$1/g;
my @top = (sort { $count{$b} <=> $count{$a} or $a <=> $b } keys %count)[0 .. 2];
my $sum = 0;
$sum += $table{$_}[1] for keys %table;
print "keys ", scalar(keys %table), " sum $sum\n";
print "words ", scalar(keys %count), " top @top length ", length($upper), "\n";
print "md5 ", $digest->hexdigest, " ", md5_hex($upper), "\n";
