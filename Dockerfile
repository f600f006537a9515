# Warren in a container: a static binary on distroless, running as non-root,
# data in a volume, a health check through warrenctl.
#   docker build -t warren .    (or: docker compose up)
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/warren ./cmd/warren \
 && go build -trimpath -ldflags="-s -w" -o /out/warrenctl ./cmd/warrenctl \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/warren /out/warrenctl /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/data /var/lib/warren
USER 65532:65532
ENV WARREN_DATA_DIR=/var/lib/warren
VOLUME ["/var/lib/warren"]
# AMQP, management API and console, Prometheus metrics
EXPOSE 5672 15672 15692
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/warrenctl", "--url", "http://127.0.0.1:15672", "health"]
ENTRYPOINT ["/usr/local/bin/warren"]
