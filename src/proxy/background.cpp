// The Downstream of a request without a client (background.hpp).
#include "proxy/background.hpp"

#include <memory>

#include "core/log.hpp"
#include "proxy/exchange.hpp"
#include "proxy/worker.hpp"

namespace weir::proxy {

class BackgroundDownstream final : public Downstream {
 public:
  BackgroundDownstream(Worker& w, const ClientInfo& client, std::string_view host,
                       std::string_view target, std::span<const http::Header> fields)
      : w_(w), alive_(std::make_shared<bool>(true)) {
    w_.background().insert(this);
    client_.ip = client.ip;
    client_.origin.addr = client.origin.addr;
    client_.origin.slot = client.origin.slot;
    client_.tls = client.tls;
    client_.tls_version = client.tls_version;
    client_.proto = client.proto;
    // The request's text, owned here: the head below points into it.
    size_t total = host.size() + target.size();
    for (const auto& f : fields)
      total += f.name.size() + f.value.size();
    text_.reserve(total);
    auto keep = [&](std::string_view s) {
      size_t at = text_.size();
      text_.append(s);
      return std::string_view(text_).substr(at, s.size());
    };
    host_ = keep(host);
    target_ = keep(target);
    for (const auto& f : fields) {
      std::string_view n = keep(f.name);
      std::string_view v = keep(f.value);
      fields_.push_back({n, v});
    }
  }

  void start() {
    ex_ = w_.exchanges().take();
    http::RequestHead req;
    req.method_text = "GET";
    req.method = http::Method::Get;
    req.target = target_;
    req.path = target_.substr(0, target_.find('?'));
    if (req.path.size() < target_.size()) req.query = target_.substr(req.path.size() + 1);
    req.headers = std::span<http::Header>(fields_);
    req.host = host_;
    req.body = http::BodyKind::None;
    log::debug("background revalidation of {}{} starts", host_, target_);
    ex_->start_background(*this, req);
    if (ex_) wake();  // a client connection's driver pumps after start(): so does this
  }

  const ClientInfo& client() const override { return client_; }
  BodyRead read_body(BodySink&) override { return BodyRead::Done; }
  void send_interim(const http::ResponseHead&) override {}
  HeadResult send_head(const ResponseOut&) override { return HeadResult::Sent; }
  size_t send_body(std::string_view payload) override { return payload.size(); }
  bool finish_body(std::string_view) override { return true; }
  bool upgrade(UpstreamConn*, ServerSlot&) override { return false; }
  void wake() override {
    if (scheduled_) return;
    scheduled_ = true;
    w_.reactor().defer([this, alive = alive_] {
      if (!*alive) return;
      scheduled_ = false;
      if (ex_) {
        for (int i = 0; i < 64 && ex_ && ex_->pump(); ++i) {
        }
      }
    });
  }
  ~BackgroundDownstream() override { w_.background().erase(this); }

  // The worker goes: the exchange lets go of its server connection and slot.
  void abort() {
    *alive_ = false;
    if (ex_) {
      Exchange* ex = ex_;
      ex_ = nullptr;
      w_.exchanges().give_back(ex);  // recycles it
    }
  }

  void exchange_done(bool complete, bool) override {
    log::debug("background revalidation of {}{} done (complete: {})", host_, target_, complete);
    w_.exchanges().give_back_later(ex_);
    ex_ = nullptr;
    *alive_ = false;
    w_.background().erase(this);  // done: nothing left for abort_background
    // Not from inside the exchange's own call stack.
    w_.reactor().defer([self = this] { delete self; });
  }

 private:
  Worker& w_;
  ClientInfo client_;
  std::string text_;
  std::string_view host_, target_;
  std::vector<http::Header> fields_;
  Exchange* ex_ = nullptr;
  std::shared_ptr<bool> alive_;
  bool scheduled_ = false;
};

void abort_background(Worker& w) {
  while (!w.background().empty()) {
    BackgroundDownstream* d = *w.background().begin();
    d->abort();
    delete d;  // erases itself
  }
}

void start_background_revalidation(Worker& w, const ClientInfo& client, std::string_view host,
                                   std::string_view target, std::span<const http::Header> fields) {
  auto* ds = new BackgroundDownstream(w, client, host, target, fields);
  // After the current batch: not nested inside the exchange that asked for it.
  w.reactor().defer([ds] { ds->start(); });
}

}  // namespace weir::proxy
