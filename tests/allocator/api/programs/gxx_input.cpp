// Compiled by g++ under LD_PRELOAD=libhakmem.so (cc1plus is a heavy new/delete user), then run.
#include <algorithm>
#include <iostream>
#include <map>
#include <numeric>
#include <regex>
#include <string>
#include <unordered_map>
#include <vector>

template <typename T>
T checksum(const std::vector<T>& values) {
  return std::accumulate(values.begin(), values.end(), T{0}, [](T a, T b) { return a * 31 + b; });
}

int main() {
  std::map<std::string, int> words;
  std::unordered_map<int, std::vector<int>> buckets;
  for (int i = 0; i < 20000; ++i) {
    words["w" + std::to_string(i * 7919 % 5000)] += i;
    buckets[i % 97].push_back(i);
  }
  std::vector<unsigned long> sums;
  for (auto& [key, values] : buckets)
    sums.push_back(std::accumulate(values.begin(), values.end(), 0UL));
  std::sort(sums.begin(), sums.end());
  std::regex pattern("w(1+)2");
  int matches = 0;
  for (auto& [word, total] : words) matches += std::regex_match(word, pattern);
  std::cout << words.size() << " " << words.begin()->first << " " << words.rbegin()->second << "\n";
  std::cout << sums.front() << " " << sums.back() << " " << checksum(sums) << " " << matches
            << "\n";
}
