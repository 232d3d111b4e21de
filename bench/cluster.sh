# The cluster scenario of bench/run (sourced by it; uses its $collector, $work, $port,
# write_config, start_sim and stop_sim): an MSP parent's children over three collector
# instances whose state is in a three-node JetStream cluster (buckets with three replicas),
# against the same backlog on one instance with SQLite. Each instance runs `collect-now` into
# its own file sink; all three start at once and share the streams through their leases.

cluster_rows=()

# CPU seconds (user+sys) the given processes have used so far.
pids_cpu() {
    local hz total=0 pid
    hz=$(getconf CLK_TCK)
    for pid in "$@"; do
        total=$(awk -v t="$total" -v hz="$hz" '{ print t + ($14 + $15) / hz }' "/proc/$pid/stat")
    done
    echo "$total"
}

# start_nats_cluster: three `nats-server -js` routed to each other on loopback ports; waits
# until the collector's own check opens the state buckets with three replicas.
start_nats_cluster() {
    local server i j routes
    server=$(command -v nats-server || echo /usr/sbin/nats-server)
    if [ ! -x "$server" ]; then
        echo "bench/run: the cluster scenario needs nats-server: apt-get install -y nats-server" >&2
        exit 1
    fi
    nats_client_ports=($((port + 101)) $((port + 102)) $((port + 103)))
    local route_ports=($((port + 201)) $((port + 202)) $((port + 203)))
    for i in 0 1 2; do
        routes=""
        for j in 0 1 2; do
            if [ "$j" != "$i" ]; then routes="${routes:+$routes,}nats://127.0.0.1:${route_ports[j]}"; fi
        done
        mkdir -p "$work/nats-$i"
        "$server" -js -a 127.0.0.1 -p "${nats_client_ports[i]}" -sd "$work/nats-$i" \
            --server_name "bench-$i" --cluster_name bench \
            --cluster "nats://127.0.0.1:${route_ports[i]}" --routes "$routes" >"$work/nats-$i.log" 2>&1 &
        nats_pids+=($!)
    done
    nats_urls="nats://127.0.0.1:${nats_client_ports[0]},nats://127.0.0.1:${nats_client_ports[1]},nats://127.0.0.1:${nats_client_ports[2]}"
    write_cluster_config probe
    for _ in $(seq 120); do
        if "$collector" test-connectivity --config "$work/probe/config.toml" 2>/dev/null | grep -q "PASS  State store"; then
            return 0
        fi
        sleep 0.5
    done
    echo "bench/run: the NATS cluster did not become ready:" >&2
    tail -5 "$work"/nats-*.log >&2
    "$collector" test-connectivity --config "$work/probe/config.toml" >&2 || true
    exit 1
}

stop_nats_cluster() {
    local pid
    for pid in "${nats_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    nats_pids=()
}

# write_cluster_config INSTANCE: bench/run's MSP config with the instance's own state dir and
# file, and its state in the cluster.
write_cluster_config() {
    local instance=$1
    mkdir -p "$work/$instance"
    write_config raw 'logs = ["authentication"]' 1
    sed -e "s#$work/state#$work/$instance/state#" -e "s#$work/events.jsonl#$work/$instance/events.jsonl#" \
        "$work/config.toml" >"$work/$instance/config.toml"
    cat >>"$work/$instance/config.toml" <<EOF

[state]
backend = "nats"
url = "$nats_urls"
bucket_prefix = "bench"
replicas = 3
EOF
}

# measure_cluster CHILDREN PER_CHILD
measure_cluster() {
    local children=$1 per_child=$2
    local expected=$((children * per_child))
    start_sim --auth-events "$per_child" "${only_auth[@]}" --msp-children "$children"

    # One instance, SQLite.
    rm -rf "$work/state" "$work/events.jsonl"
    write_config raw 'logs = ["authentication"]' 1
    if ! /usr/bin/time -f "%e %U %S %M" -o "$work/time.txt" \
        "$collector" collect-now --config "$work/config.toml" >"$work/collect.out" 2>"$work/collect.err"; then
        echo "bench/run: collect-now failed (cluster scenario, SQLite):" >&2
        tail -20 "$work/collect.err" >&2
        exit 1
    fi
    local wall user sys rss lines
    read -r wall user sys rss <"$work/time.txt"
    lines=$(wc -l <"$work/events.jsonl")
    if [ "$lines" != "$expected" ]; then
        echo "bench/run: cluster scenario, SQLite: expected $expected events, the file holds $lines" >&2
        exit 1
    fi
    rm -f "$work/events.jsonl"
    cluster_rows+=("| 1 instance, SQLite state | $expected | $wall | $(awk -v n="$expected" -v w="$wall" 'BEGIN { printf "%.0f", n / w }') | $(awk -v n="$expected" -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", (u + s) * 1e6 / n }') | – | $(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }') | $children | $expected |")
    echo "  done: cluster scenario, 1 instance on SQLite" >&2

    # Three instances, NATS state (R3), all started at once.
    start_nats_cluster
    local instance pids=() nats_before nats_after started ended
    for instance in a b c; do write_cluster_config "$instance"; done
    nats_before=$(pids_cpu "${nats_pids[@]}")
    started=$(date +%s.%N)
    for instance in a b c; do
        /usr/bin/time -f "%e %U %S %M" -o "$work/$instance/time.txt" \
            "$collector" collect-now --config "$work/$instance/config.toml" >"$work/$instance/collect.out" 2>"$work/$instance/collect.err" &
        pids+=($!)
    done
    local failed=0 pid
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    ended=$(date +%s.%N)
    nats_after=$(pids_cpu "${nats_pids[@]}")
    if [ "$failed" = 1 ]; then
        echo "bench/run: collect-now failed (cluster scenario, NATS state):" >&2
        # What failed, rather than the last streams that went well.
        grep -h -v '^ok ' "$work"/?/collect.err | tail -n 20 >&2
        exit 1
    fi
    local cpu=0 rsss="" streams="" events="" total=0 unique
    for instance in a b c; do
        read -r wall user sys rss <"$work/$instance/time.txt"
        cpu=$(awk -v c="$cpu" -v u="$user" -v s="$sys" 'BEGIN { print c + u + s }')
        rsss+="${rsss:+ / }$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')"
        # An instance that found every stream held by the others wrote no file.
        touch "$work/$instance/events.jsonl"
        lines=$(wc -l <"$work/$instance/events.jsonl")
        total=$((total + lines))
        events+="${events:+ / }$lines"
        streams+="${streams:+ / }$({ grep -o '"account_id":"[^"]*"' "$work/$instance/events.jsonl" || true; } | sort -u | wc -l)"
    done
    unique=$(cat "$work"/?/events.jsonl | grep -o '"event_id":"[^"]*"' | sort -u | wc -l)
    if [ "$total" != "$expected" ] || [ "$unique" != "$expected" ]; then
        echo "bench/run: cluster scenario, NATS state: expected $expected events, the files hold $total ($unique distinct)" >&2
        exit 1
    fi
    local elapsed
    elapsed=$(awk -v s="$started" -v e="$ended" 'BEGIN { printf "%.1f", e - s }')
    cluster_rows+=("| 3 instances, NATS state (3 nodes, R3) | $expected | $elapsed | $(awk -v n="$expected" -v w="$elapsed" 'BEGIN { printf "%.0f", n / w }') | $(awk -v n="$expected" -v c="$cpu" 'BEGIN { printf "%.2f", c * 1e6 / n }') | $(awk -v n="$expected" -v a="$nats_before" -v b="$nats_after" 'BEGIN { printf "%.2f", (b - a) * 1e6 / n }') | $rsss | $streams | $events |")
    rm -f "$work"/?/events.jsonl
    stop_nats_cluster
    stop_sim
    echo "  done: cluster scenario, 3 instances on NATS" >&2
}
