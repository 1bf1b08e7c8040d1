// A minimal parallel-for over std::thread: worker exceptions are caught and
// rethrown on the calling thread, and one task runs inline without a thread.
#pragma once

#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace hamsearch {

/// Runs fn(t) for t in [0, ntasks) on ntasks threads (the caller runs task 0)
/// and rethrows the first exception a task raised.
template <class Fn>
void parallel_tasks(size_t ntasks, Fn&& fn) {
    if (ntasks <= 1) {
        if (ntasks == 1) fn(size_t{0});
        return;
    }
    std::exception_ptr error;
    std::mutex error_mu;
    auto guarded = [&](size_t t) {
        try {
            fn(t);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mu);
            if (!error) error = std::current_exception();
        }
    };
    std::vector<std::thread> workers;
    workers.reserve(ntasks - 1);
    try {
        for (size_t t = 1; t < ntasks; ++t) workers.emplace_back(guarded, t);
    } catch (...) {  // could not start a thread: finish what started, then report
        for (auto& w : workers) w.join();
        throw;
    }
    guarded(0);
    for (auto& w : workers) w.join();
    if (error) std::rethrow_exception(error);
}

/// [begin, end) of part `t` when `n` items are split into `parts` near-equal parts.
inline std::pair<size_t, size_t> split_range(size_t n, size_t parts, size_t t) {
    const size_t base = n / parts, extra = n % parts;
    const size_t begin = t * base + (t < extra ? t : extra);
    return {begin, begin + base + (t < extra ? 1 : 0)};
}

}  // namespace hamsearch
