// The destination claim over a POSIX store: refusal while held, takeover of
// released, lapsed and crashed claims, and loss to a successor. The S3 path
// runs in tests/python/test_claim.py against the test server.
#include "reshard/pipeline/claim.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
#include <thread>

#include "reshard/manifest.hpp"
#include "reshard/store/posix_store.hpp"
#include "support/temp_dir.hpp"

namespace reshard {
namespace {

double unix_now() { return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count(); }

class ClaimTest : public ::testing::Test {
 protected:
  std::string dir() const { return temp_ / "dst/"; }
  std::string claim_key(std::uint64_t generation) const { return claims_directory(dir()) + sequence_name(generation); }
  void put_holder(std::uint64_t generation, const ClaimHolder& holder) {
    const std::string text = holder.encode();
    ASSERT_TRUE(store_->write_atomic(claim_key(generation), Bytes(text.begin(), text.end())).ok());
  }
  ClaimHolder read_holder(std::uint64_t generation) {
    auto bytes = store_->read_all(claim_key(generation));
    EXPECT_TRUE(bytes.ok());
    return *ClaimHolder::decode(*bytes);
  }

  testing::TempDir temp_;
  std::shared_ptr<Store> store_ = make_posix_store();
};

TEST_F(ClaimTest, SecondJobIsRefusedNamingTheFirst) {
  auto first = DestinationClaim::take(*store_, dir(), "job-a");
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_EQ((*first)->generation(), 0u);
  auto second = DestinationClaim::take(*store_, dir(), "job-b");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().kind(), ErrorKind::kInvalidInput);
  EXPECT_NE(second.status().message().find("claimed by job job-a"), std::string::npos) << second.status().message();
  EXPECT_NE(second.status().message().find("pid " + std::to_string(::getpid())), std::string::npos);
  EXPECT_TRUE((*first)->still_held().ok());
}

TEST_F(ClaimTest, NamesThatAreNotGenerationsAreIgnored) {
  // 20 digits reach past 2^64: a stray file named so once threw out of the
  // parse and ended the job with "internal error".
  for (const char* stray : {"99999999999999999999.json", "0000000000000000000x.json", "00000000000000000007.txt"}) {
    const std::string key = claims_directory(dir()) + stray;
    ASSERT_TRUE(store_->write_atomic(key, Bytes{'{', '}'}).ok());
  }
  auto claim = DestinationClaim::take(*store_, dir(), "job-a");
  ASSERT_TRUE(claim.ok()) << claim.status().message();
  EXPECT_EQ((*claim)->generation(), 0u);
}

TEST_F(ClaimTest, ReleasedClaimIsTakenAtTheNextGeneration) {
  {
    auto first = DestinationClaim::take(*store_, dir(), "job-a");
    ASSERT_TRUE(first.ok());
    (*first)->mark_destination_written();
  }
  EXPECT_TRUE(read_holder(0).released);
  auto second = DestinationClaim::take(*store_, dir(), "job-b");
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_EQ((*second)->generation(), 1u);
  EXPECT_EQ(read_holder(1).job_id, "job-b");
}

TEST_F(ClaimTest, JobThatWroteNothingLeavesNoTrace) {
  {
    auto first = DestinationClaim::take(*store_, dir(), "job-refused");
    ASSERT_TRUE(first.ok());
    EXPECT_TRUE(std::filesystem::exists(claim_key(0)));
  }
  EXPECT_FALSE(std::filesystem::exists(dir())) << "the destination directory the claim created is gone";
  std::filesystem::create_directories(dir());
  { ASSERT_TRUE(DestinationClaim::take(*store_, dir(), "job-refused").ok()); }
  EXPECT_TRUE(std::filesystem::exists(dir())) << "a directory the user made stays";
  EXPECT_FALSE(std::filesystem::exists(dir() + "_reshard"));
}

TEST_F(ClaimTest, OtherHostsClaimKeepsOthersOutUntilItLapses) {
  ClaimHolder other = ClaimHolder::of_this_process("job-elsewhere");
  other.host = "some-other-node";
  other.renewed_at = unix_now() - 5;
  put_holder(0, other);
  const ClaimTiming timing{60, 10};
  EXPECT_FALSE(DestinationClaim::take(*store_, dir(), "job-b", timing).ok());
  other.renewed_at = unix_now() - 61;
  put_holder(0, other);
  auto taken = DestinationClaim::take(*store_, dir(), "job-b", timing);
  ASSERT_TRUE(taken.ok()) << taken.status().message();
  EXPECT_EQ((*taken)->generation(), 1u);
}

TEST_F(ClaimTest, ClaimOfAnEndedProcessOnThisHostIsFreeAtOnce) {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ::waitpid(child, nullptr, 0);
  ClaimHolder dead = ClaimHolder::of_this_process("job-crashed");
  dead.pid = child;  // same host and boot, a process that has exited
  put_holder(0, dead);
  EXPECT_NE(why_claim_is_free(dead, unix_now(), {}), "");
  auto taken = DestinationClaim::take(*store_, dir(), "job-crashed");
  ASSERT_TRUE(taken.ok()) << taken.status().message();
  EXPECT_EQ((*taken)->generation(), 1u);
  // The live process's own claim is not free.
  EXPECT_EQ(why_claim_is_free(read_holder(1), unix_now(), {}), "");
}

TEST_F(ClaimTest, ReusedPidWithAnotherStartTimeIsNotTheHolder) {
  ClaimHolder holder = ClaimHolder::of_this_process("job-old");
  holder.process_start = "1";  // this pid, but a process that started at boot
  EXPECT_NE(why_claim_is_free(holder, unix_now(), {}).find("has ended"), std::string::npos);
}

TEST_F(ClaimTest, LiveProcessWhoseLauncherIsGoneIsEnding) {
  ClaimHolder holder = ClaimHolder::of_this_process("job-killed-with-mpirun");
  EXPECT_EQ(why_claim_is_free(holder, unix_now(), {}), "");
  holder.parent_pid = holder.parent_pid + 1;  // as if reparented after its launcher died
  EXPECT_NE(why_claim_is_free(holder, unix_now(), {}).find("lost its launcher"), std::string::npos);
}

TEST_F(ClaimTest, HolderLearnsItWasTakenOver) {
  auto mine = DestinationClaim::take(*store_, dir(), "job-a");
  ASSERT_TRUE(mine.ok());
  ClaimHolder successor = ClaimHolder::of_this_process("job-b");
  put_holder(1, successor);
  const Status held = (*mine)->still_held();
  ASSERT_FALSE(held.ok());
  EXPECT_NE(held.message().find("taken over"), std::string::npos) << held.message();
  mine->reset();
  EXPECT_FALSE(read_holder(0).released) << "a lost claim is not the loser's to release";
}

TEST_F(ClaimTest, RenewalKeepsALongJobsClaimFresh) {
  const ClaimTiming timing{3, 0.2};
  auto mine = DestinationClaim::take(*store_, dir(), "job-a", timing);
  ASSERT_TRUE(mine.ok());
  const double first = read_holder(0).renewed_at;
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_GT(read_holder(0).renewed_at, first);
  EXPECT_TRUE((*mine)->still_held().ok());
}

// Jobs started at the same instant on one destination, 20 rounds: exactly
// one holds it, the rest are refused with exit 2.
TEST_F(ClaimTest, RacingJobsOneWinsEachRound) {
  for (int round = 0; round < 20; ++round) {
    const std::string d = temp_ / ("race" + std::to_string(round) + "/");
    constexpr int kJobs = 4;
    std::atomic<int> ready{0};
    std::vector<std::optional<Result<std::unique_ptr<DestinationClaim>>>> results(kJobs);
    std::vector<std::thread> jobs;
    for (int j = 0; j < kJobs; ++j) {
      jobs.emplace_back([&, j] {
        ++ready;
        while (ready.load() < kJobs) std::this_thread::yield();
        results[j].emplace(DestinationClaim::take(*store_, d, "job-" + std::to_string(j)));
      });
    }
    for (auto& t : jobs) t.join();
    int held = 0;
    for (const auto& r : results) {
      ASSERT_TRUE(r.has_value());
      if (r->ok()) {
        ++held;
      } else {
        EXPECT_EQ(r->status().kind(), ErrorKind::kInvalidInput) << r->status().message();
      }
    }
    EXPECT_EQ(held, 1) << "round " << round;
  }
}

}  // namespace
}  // namespace reshard
