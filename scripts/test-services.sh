#!/usr/bin/env bash
# Installs (Debian packages, when missing) and starts on loopback the real servers the
# tests talk to. Idempotent: a server already answering is left alone. Used by .ci/run;
# run it by hand before `cargo test --workspace` on a new machine.
#
#   redis-server  127.0.0.1:6379   no auth                  (key-value, outbound redis, redis trigger)
#   redis-server  127.0.0.1:6380   TLS only (rediss://localhost:6380)
#   redis-server  127.0.0.1:6381   TLS only, client certificate required
#   mosquitto     127.0.0.1:1883   user wisp / password wisp (outbound MQTT); TLS on :8883, :8884 (client certificate required)
#   PostgreSQL    127.0.0.1:5432   user wisp / password wisp, database wisp_test (plain and TLS);
#                                  user wispcert / password wisp needs a client certificate
#   MariaDB       127.0.0.1:3306   user wisp / password wisp, database wisp_test (plain and TLS);
#                                  user wispcert / password wisp needs a client certificate
# The TLS listeners (and PostgreSQL's, which takes both) present $state/tls/server.pem, for
# the name `localhost` only, signed by the test CA $state/tls/ca.pem.
#   docker-registry and htpasswd are only installed: the OCI tests start their own.
#   iproute2 and dnsmasq-base are only installed: the SSRF tests run them in network
#   namespaces they create.
#   containerd, runc, umoci and busybox-static are only installed: the shim's tests start
#   their own containerd.
#   prometheus and chromium are only installed: the observability tests start their own
#   Prometheus on a free port and render the dashboard in headless Chromium.
set -euo pipefail

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
state="${WISP_TEST_SERVICES_DIR:-/tmp/wisp-test-services}"
mkdir -p "$state"

wait_for() { # description, command...
    local what="$1"
    shift
    for _ in $(seq 100); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "error: $what did not come up; see the logs under $state" >&2
    return 1
}

# Whether the pid in a pid file is a live (not zombie) process named like the server: a pid
# file left by a server that is gone (a killed run, a reused /tmp) must not pass for one.
pid_file_alive() { # pid file, process name
    local pid stat
    pid="$(head -1 "$1" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    # /proc/<pid>/stat is "pid (comm) state ...": no procps needed.
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    [[ "$stat" == *"($2"* && "$stat" != *") Z "* ]]
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
# The SSRF tests build network namespaces with their own DNS server.
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing+=(iproute2)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq-base)
# The metrics test scrapes Wisp with a real Prometheus, which it starts itself.
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
# The dashboard test renders its page in headless Chromium.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The shim's tests run a private containerd (runc runs a busybox container beside the
# shim's), building their images with umoci; the shim itself builds against libseccomp.
command -v containerd >/dev/null 2>&1 || missing+=(containerd)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing+=(runc)
command -v umoci >/dev/null 2>&1 || missing+=(umoci)
[ -x /bin/busybox ] || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
export PATH="$PATH:/usr/sbin"

# A test CA, a server certificate for `localhost` (not for 127.0.0.1, so that a test can
# connect by address to check the name) and a client certificate. Made once; the servers
# below read them.
tls="$state/tls"
if [ ! -f "$tls/server.pem" ]; then
    mkdir -p "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=wisp test CA" \
        -keyout "$tls/ca.key" -out "$tls/ca.pem" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$tls/server.key" -out "$tls/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$tls/server.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
        -CAcreateserial -days 3650 -extfile "$tls/server.ext" -out "$tls/server.pem" >/dev/null 2>&1
fi
if [ ! -f "$tls/client.pem" ]; then
    openssl req -newkey rsa:2048 -nodes -subj "/CN=wisp test client" \
        -keyout "$tls/client.key" -out "$tls/client.csr" >/dev/null 2>&1
    printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' >"$tls/client.ext"
    openssl x509 -req -in "$tls/client.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
        -CAcreateserial -days 3650 -extfile "$tls/client.ext" -out "$tls/client.pem" >/dev/null 2>&1
fi

# Redis.
if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
    mkdir -p "$state/redis"
    redis-server --port 6379 --bind 127.0.0.1 --daemonize yes --save "" \
        --dir "$state/redis" --logfile "$state/redis/redis.log"
    wait_for "redis-server" redis-cli -p 6379 ping
fi

# Redis over TLS only: on :6380, and on :6381 requiring a client certificate from the
# test CA (the client certificate is presented to both when checking).
redis_tls_ready() { # port
    redis-cli --tls --cacert "$tls/ca.pem" --cert "$tls/client.pem" --key "$tls/client.key" \
        -h localhost -p "$1" ping
}
for tls_redis in "6380 no" "6381 yes"; do
    read -r port auth_clients <<<"$tls_redis"
    if ! redis_tls_ready "$port" >/dev/null 2>&1; then
        mkdir -p "$state/redis-tls-$port"
        redis-server --port 0 --tls-port "$port" --bind 127.0.0.1 --daemonize yes --save "" \
            --tls-cert-file "$tls/server.pem" --tls-key-file "$tls/server.key" \
            --tls-ca-cert-file "$tls/ca.pem" --tls-auth-clients "$auth_clients" \
            --dir "$state/redis-tls-$port" --logfile "$state/redis-tls-$port/redis.log" \
            --pidfile "$state/redis-tls-$port/redis.pid"
        wait_for "redis-server (TLS on :$port)" redis_tls_ready "$port"
    fi
done

# Mosquitto, with a password so the tests exercise credentials; TLS listeners on :8883 and
# (client certificate required) :8884.
mqtt_ready() {
    mosquitto_pub -h 127.0.0.1 -p 1883 -u wisp -P wisp -t wisp/ping -m x &&
        mosquitto_pub --cafile "$tls/ca.pem" -h localhost -p 8883 -u wisp -P wisp -t wisp/ping -m x &&
        mosquitto_pub --cafile "$tls/ca.pem" --cert "$tls/client.pem" --key "$tls/client.key" \
            -h localhost -p 8884 -u wisp -P wisp -t wisp/ping -m x
}
if ! mqtt_ready >/dev/null 2>&1; then
    # One started without the TLS listener (by an older version of this script) goes.
    if pid_file_alive "$state/mosquitto/mosquitto.pid" mosquitto; then
        kill "$(head -1 "$state/mosquitto/mosquitto.pid")"
        sleep 0.5
    fi
    mkdir -p "$state/mosquitto"
    cp "$tls/server.pem" "$tls/server.key" "$tls/ca.pem" "$state/mosquitto/"
    rm -f "$state/mosquitto/passwd"
    touch "$state/mosquitto/passwd"
    chmod 0700 "$state/mosquitto/passwd"
    mosquitto_passwd -b "$state/mosquitto/passwd" wisp wisp
    cat >"$state/mosquitto/mosquitto.conf" <<EOF
per_listener_settings false
allow_anonymous false
listener 1883 127.0.0.1
listener 8883 127.0.0.1
cafile $state/mosquitto/ca.pem
certfile $state/mosquitto/server.pem
keyfile $state/mosquitto/server.key
listener 8884 127.0.0.1
cafile $state/mosquitto/ca.pem
certfile $state/mosquitto/server.pem
keyfile $state/mosquitto/server.key
require_certificate true
pid_file $state/mosquitto/mosquitto.pid
password_file $state/mosquitto/passwd
persistence false
log_dest file $state/mosquitto/mosquitto.log
EOF
    # Mosquitto drops to the `mosquitto` user when started as root; it must read the files.
    chown -R "$(id -u):$(id -g)" "$state/mosquitto"
    if id mosquitto >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
        chown -R mosquitto "$state/mosquitto"
    fi
    mosquitto -d -c "$state/mosquitto/mosquitto.conf"
    wait_for "mosquitto" mqtt_ready
fi

# PostgreSQL: a private cluster owned by the `postgres` user (it refuses to run as root).
pg_bin="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")"
pg_ready() {
    PGPASSWORD=wisp psql "host=127.0.0.1 port=5432 user=wisp dbname=wisp_test sslmode=require" \
        -c 'select 1' &&
        PGPASSWORD=wisp psql "host=localhost port=5432 user=wispcert dbname=wisp_test \
            sslmode=verify-full sslrootcert=$tls/ca.pem sslcert=$tls/client.pem \
            sslkey=$tls/client.key" -c 'select 1'
}
if ! pg_ready >/dev/null 2>&1; then
    as_pg=()
    if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); fi
    pg_data="$state/postgres"
    if [ ! -f "$pg_data/PG_VERSION" ]; then
        mkdir -p "$pg_data"
        [ "$(id -u)" -ne 0 ] || chown postgres "$pg_data" "$state"
        "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_data" -U postgres --auth-local=trust \
            --auth-host=scram-sha-256 >/dev/null
    fi
    # The server's key, where PostgreSQL accepts it (owned by it, mode 0600), and the CA
    # its client certificates must come from.
    cp "$tls/server.pem" "$pg_data/server.crt"
    cp "$tls/server.key" "$pg_data/server.key"
    cp "$tls/ca.pem" "$pg_data/root.crt"
    chmod 0600 "$pg_data/server.key"
    [ "$(id -u)" -ne 0 ] || chown postgres "$pg_data/server.crt" "$pg_data/server.key" "$pg_data/root.crt"
    # The role `wispcert` must present a client certificate from the test CA.
    sed -i '/^hostssl wisp_test wispcert /d' "$pg_data/pg_hba.conf"
    sed -i '1i hostssl wisp_test wispcert 127.0.0.1/32 scram-sha-256 clientcert=verify-ca' \
        "$pg_data/pg_hba.conf"
    # A server started without TLS (by an older version of this script) is restarted.
    if pid_file_alive "$pg_data/postmaster.pid" postgres; then
        "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null || true
    fi
    if ! pid_file_alive "$pg_data/postmaster.pid" postgres; then
        rm -f "$pg_data/postmaster.pid" "$pg_data"/.s.PGSQL.5432 "$pg_data"/.s.PGSQL.5432.lock
        "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/server.log" -w \
            -o "-c listen_addresses=127.0.0.1 -p 5432 -k $pg_data -c ssl=on -c ssl_ca_file=root.crt" \
            start >/dev/null
    fi
    "${as_pg[@]}" psql -h "$pg_data" -p 5432 -U postgres -v ON_ERROR_STOP=1 -q <<'EOF'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wisp') THEN
    CREATE ROLE wisp LOGIN PASSWORD 'wisp';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wispcert') THEN
    CREATE ROLE wispcert LOGIN PASSWORD 'wisp';
  END IF;
END $$;
SELECT 'CREATE DATABASE wisp_test OWNER wisp'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'wisp_test')\gexec
EOF
    wait_for "PostgreSQL" pg_ready
fi

# MariaDB: a private data directory, run as the current user.
my_ready() { mariadb -h 127.0.0.1 -P 3306 -u wisp -pwisp wisp_test -e 'select 1'; }
my_tls_ready() {
    mariadb -h 127.0.0.1 -P 3306 -u wisp -pwisp --ssl wisp_test -N \
        -e "SHOW SESSION STATUS LIKE 'Ssl_cipher'" | awk '{print $2}' | grep -q .
}
if ! my_tls_ready >/dev/null 2>&1; then
    my_data="$state/mariadb"
    user_args=()
    if [ "$(id -u)" -eq 0 ]; then user_args=(--user=root); fi
    if [ ! -d "$my_data/mysql" ]; then
        mkdir -p "$my_data"
        mariadb-install-db --datadir="$my_data" "${user_args[@]}" --auth-root-authentication-method=socket \
            --skip-test-db >"$state/mariadb-install.log" 2>&1
    fi
    # A socket or pid file left by a server that is gone (a killed run, a reused /tmp) must
    # not pass for a running server.
    # A server started without TLS (by an older version of this script) is restarted.
    if mariadb-admin --socket="$my_data/mysqld.sock" -u root ping >/dev/null 2>&1; then
        mariadb-admin --socket="$my_data/mysqld.sock" -u root shutdown >/dev/null 2>&1 || true
        for _ in $(seq 100); do [ -S "$my_data/mysqld.sock" ] || break; sleep 0.1; done
    fi
    if ! mariadb-admin --socket="$my_data/mysqld.sock" -u root ping >/dev/null 2>&1; then
        rm -f "$my_data/mysqld.sock" "$my_data/mysqld.pid"
        (mariadbd --datadir="$my_data" "${user_args[@]}" --bind-address=127.0.0.1 --port=3306 \
            --ssl-cert="$tls/server.pem" --ssl-key="$tls/server.key" --ssl-ca="$tls/ca.pem" \
            --socket="$my_data/mysqld.sock" --pid-file="$my_data/mysqld.pid" \
            --log-error="$my_data/error.log" --skip-name-resolve >/dev/null 2>&1 &)
        wait_for "MariaDB" mariadb-admin --socket="$my_data/mysqld.sock" -u root ping
    fi
    mariadb --socket="$my_data/mysqld.sock" -u root <<'EOF'
CREATE DATABASE IF NOT EXISTS wisp_test;
CREATE USER IF NOT EXISTS 'wisp'@'127.0.0.1' IDENTIFIED BY 'wisp';
CREATE USER IF NOT EXISTS 'wisp'@'localhost' IDENTIFIED BY 'wisp';
GRANT ALL PRIVILEGES ON wisp_test.* TO 'wisp'@'127.0.0.1';
GRANT ALL PRIVILEGES ON wisp_test.* TO 'wisp'@'localhost';
FLUSH PRIVILEGES;
EOF
    wait_for "MariaDB" my_ready
    wait_for "MariaDB (TLS)" my_tls_ready
fi
# A user that must present a client certificate from the test CA.
mariadb --socket="$state/mariadb/mysqld.sock" -u root <<'EOF'
CREATE USER IF NOT EXISTS 'wispcert'@'127.0.0.1' IDENTIFIED BY 'wisp' REQUIRE X509;
GRANT ALL PRIVILEGES ON wisp_test.* TO 'wispcert'@'127.0.0.1';
EOF

echo "test services up: redis :6379 (TLS :6380, :6381 with client certificates), mosquitto :1883 (TLS :8883, :8884 with client certificates), postgres :5432 (TLS too), mariadb :3306 (TLS too) (127.0.0.1)"
