#include "reshard/metrics.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>

#include "reshard/store/http_client.hpp"

namespace reshard {
namespace {

// The exposition format escapes backslash and newline in HELP text, and
// also the double quote in label values.
std::string escape(const std::string& text, bool quotes) {
  std::string out;
  for (const char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char text[32];
  const auto end = std::to_chars(text, text + sizeof(text), value).ptr;
  return std::string(text, end);
}

}  // namespace

std::string render_prometheus(const std::vector<MetricFamily>& families) {
  std::string out;
  for (const auto& family : families) {
    out += "# HELP " + family.name + " " + escape(family.help, false) + "\n";
    out += "# TYPE " + family.name + " " + family.type + "\n";
    for (const auto& sample : family.samples) {
      out += family.name;
      if (!sample.labels.empty()) {
        out += "{";
        for (std::size_t i = 0; i < sample.labels.size(); ++i) {
          out += (i ? "," : "") + sample.labels[i].first + "=\"" + escape(sample.labels[i].second, true) + "\"";
        }
        out += "}";
      }
      out += " " + format_value(sample.value) + "\n";
    }
  }
  return out;
}

Status write_file_atomically(const std::string& path, std::string_view text) {
  const std::string temporary = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Invalid("writing " + temporary + ": " + std::strerror(errno));
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(temporary.c_str());
      return Status::Invalid("writing " + temporary + ": " + why);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0 || ::rename(temporary.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(temporary.c_str());
    return Status::Invalid("writing " + path + ": " + why);
  }
  return Status::Ok();
}

Status push_to_gateway(const std::string& gateway, const std::string& job, const std::string& text) {
  std::string url = gateway;
  while (!url.empty() && url.back() == '/') url.pop_back();
  url += "/metrics/job/" + job;
  http::Request request;
  request.method = "PUT";
  request.url = url;
  request.headers = {{"Content-Type", "text/plain; version=0.0.4"}};
  request.body = ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  request.timeout_seconds = 30;
  const http::Response response = http::perform(request);
  if (!response.transport_ok) return Status::Invalid("pushing metrics to " + url + ": " + response.transport_error);
  if (response.status / 100 != 2) {
    std::string body(response.body.begin(), response.body.end());
    if (body.size() > 200) body.resize(200);
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
    return Status::Invalid("pushing metrics to " + url + ": HTTP " + std::to_string(response.status) +
                           (body.empty() ? "" : " " + body));
  }
  return Status::Ok();
}

}  // namespace reshard
