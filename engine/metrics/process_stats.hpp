// What this process has used so far, from getrusage; and the threads the machine offers.
// Any thread; none blocks.
#pragma once

#include <sys/resource.h>

#include <cstdint>

namespace sluice {

uint64_t peak_rss_bytes();
double process_cpu_seconds();          // user + system time of this process so far
double cpu_seconds(const rusage& ru);  // its user + system time
int hardware_threads();                // threads oneTBB may use here (affinity and cgroups)

}  // namespace sluice
