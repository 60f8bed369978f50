// Marks the threads sluice starts outside the TBB arena (the runner's ticker, the HTTP loop).
// Work they hand to the flow graph is posted into the arena instead of spawned from outside it:
// a task spawned from a foreign thread is not guaranteed to be picked up by the arena's threads.
#pragma once

namespace sluice {
inline thread_local bool t_outside_arena = false;
}
