// The list of every workload the runner knows, in the order --help shows them.
#include <algorithm>

#include "workload.h"

namespace hakmem::workloads {
namespace {

std::vector<Workload> build_registry() {
  std::vector<Workload> workloads;
  workloads.push_back(make_larson());
  workloads.push_back(make_random_mixed());
  workloads.push_back(make_bg_spill());
  workloads.push_back(make_producer_consumer());
  workloads.push_back(make_cache_scratch());
  workloads.push_back(make_footprint());
  for (auto& selftest : make_selftests()) workloads.push_back(std::move(selftest));
  return workloads;
}

}  // namespace

std::span<const Workload> all_workloads() {
  static const std::vector<Workload> workloads = build_registry();
  return workloads;
}

const Workload* find_workload(std::string_view name) {
  const auto workloads = all_workloads();
  const auto found = std::find_if(workloads.begin(), workloads.end(),
                                  [&](const Workload& workload) { return workload.name == name; });
  return found == workloads.end() ? nullptr : &*found;
}

}  // namespace hakmem::workloads
