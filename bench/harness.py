"""Run the benchmark: make the data sets, start the servers, drive interleaved rounds."""

import contextlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import psycopg

from bench import load
from bench.dataset import Shape
from bench.granian import Granian
from bench.scenarios import Row
from bench.scenarios import ceiling_row
from bench.scenarios import data_set_rows
from bench.seed import seed
from bench.servers import Gunicorn
from bench.servers import Redis
from bench.servers import answers
from bench.servers import free_port
from bench.settings import OUT
from bench.settings import PG_ADMIN_URL
from bench.settings import PG_URL_TEMPLATE
from bench.settings import VENV_BIN
from bench.settings import Profile
from bench.settings import idp_env
from bench.settings import new_secret_key
from bench.settings import server_env

#: Seconds between two rows, so one row's connections are gone before the next starts.
SETTLE = 0.2


@dataclass
class DataSet:
    """One database of one size, with its IdP and floor servers."""

    database: str
    size: int
    url: str
    idp: Gunicorn | None = None
    floor: Gunicorn | None = None
    rows: list[Row] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    seed_seconds: float = 0.0

    @property
    def name(self) -> str:
        """Short label such as ``sqlite-10k``."""
        return f"{self.database}-{human(self.size)}"


@dataclass
class Measurement:
    """Every outcome of one row of one data set (or of the ceiling)."""

    data_set: DataSet | None
    row: Row
    server: Gunicorn
    rounds: list[load.Outcome] = field(default_factory=list)
    warmup: load.Outcome | None = None
    #: Next unused index into a single-use row's credentials.
    offset: int = 0


def human(n: int) -> str:
    """10000 -> 10k, 1000000 -> 1M."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the results table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def migrate(env: dict) -> None:
    """Make the schema with the real migrations, in production mode.

    SQLite files are copies of one migrated template, which saves a process start per size.
    """
    url = env["DATABASE_URL"]
    template = OUT / "template.sqlite3"
    if url.startswith("sqlite") and template.exists():
        shutil.copyfile(template, url.removeprefix("sqlite:///"))
        return
    if url.startswith("sqlite"):
        env = {**env, "DATABASE_URL": f"sqlite:///{template}"}
    subprocess.run([str(VENV_BIN / "flask"), "--app", "app", "db", "upgrade"], env=env,
                   check=True, capture_output=True)
    if url.startswith("sqlite"):
        shutil.copyfile(template, url.removeprefix("sqlite:///"))


def create_database(database: str, size: int, tag: str) -> str:
    """A fresh SQLite file, or a scratch PostgreSQL database of our own."""
    if database == "sqlite":
        path = OUT / f"idp-{human(size)}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    name = f"idp_bench_{tag}_{human(size).lower()}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return PG_URL_TEMPLATE.format(name=name)


def drop_database(url: str) -> None:
    """Drop a scratch PostgreSQL database made by :func:`create_database`."""
    if not url.startswith("postgresql"):
        return
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Run:
    """One benchmark run; a context manager that always stops what it started."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.tag = f"{int(time.time())}"
        self.secret_key = new_secret_key()
        self.data_sets: list[DataSet] = []
        self.servers: list[Gunicorn] = []
        self.redis: Redis | None = None
        self.ceiling: Gunicorn | None = None
        self.measurements: list[Measurement] = []
        #: The peer authorization servers (--peers), measured beside the IdP.
        self.peers: list = []
        #: Server name -> its workers' memory, read once the rounds are over.
        self.memory: dict[str, list[dict]] = {}

    def __enter__(self):
        """Start clean: a migrated template left by an earlier run may predate a migration."""
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "template.sqlite3").unlink(missing_ok=True)
        return self

    def __exit__(self, *exc):
        """Stop every server, drop the scratch databases, delete the raw credentials."""
        for server in self.servers:
            server.terminate()
        for server in self.servers:
            server.stop()
        for path in [*OUT.glob("values-*.txt"), *OUT.glob("values-peer-*.json")]:
            path.unlink()
        if self.redis:
            self.redis.stop()
        if self.profile.keep_data:
            return False
        for data_set in self.data_sets:
            with contextlib.suppress(psycopg.Error):
                drop_database(data_set.url)
        # A 1M SQLite file is over a gigabyte; the logs and plans stay for inspection.
        for path in [*OUT.glob("*.sqlite3*"), *OUT.glob("peers/*.sqlite3*")]:
            path.unlink()
        return False

    def limiter_uri(self, database: str) -> str:
        """SQLite runs single-host (counters in memory); PostgreSQL as deployed, with Redis."""
        if database == "sqlite":
            return "memory://"
        if self.redis is None:
            self.redis = Redis(free_port())
            self.redis.start()
        return self.redis.url

    def prepare(self) -> None:
        """Make and seed every data set, then start all servers at once."""
        self.ceiling = self.server("ceiling", "bench.apps.hello:app", {}, "/hello")
        for database in self.profile.databases:
            for size in self.profile.sizes:
                data_set = DataSet(database, size, create_database(database, size, self.tag))
                self.data_sets.append(data_set)
                self.fill(data_set)
        if self.profile.peers:
            from bench import peers

            self.peers = peers.prepare(self)
        for server in self.servers:
            server.spawn()
        for server in self.servers:
            server.wait_until(lambda s=server: answers(s.url + s.ready_path), "ready")
        if self.peers:
            peers.finish(self.peers)
        self.measurements = [Measurement(None, ceiling_row(), self.ceiling)]
        for data_set in self.data_sets:
            for row in data_set.rows:
                server = data_set.floor if row.server == "floor" else data_set.idp
                self.measurements.append(Measurement(data_set, row, server))
        for peer in self.peers:
            self.measurements += [Measurement(peer, row, peer.server) for row in peer.rows]

    def server(self, name: str, target: str, env: dict, ready_path: str) -> Gunicorn:
        """Define a server on a free port with the shared environment plus ``env``."""
        port = free_port()
        shared = server_env(port)
        if self.profile.server_threads:
            shared["IDP_THREADS"] = str(self.profile.server_threads)
        if self.profile.server_workers:
            shared["IDP_WORKERS"] = str(self.profile.server_workers)
        kind = Granian if self.profile.server == "granian" else Gunicorn
        server = kind(name, target, {**shared, **env}, port, ready_path,
                      self.profile.worker_class)
        self.servers.append(server)
        return server

    def fill(self, data_set: DataSet) -> None:
        """Migrate and seed one database, and define its IdP and floor servers."""
        env = idp_env(data_set.url, 0, self.secret_key, self.limiter_uri(data_set.database))
        log(f"{data_set.name}: migrating")
        migrate(env)
        log(f"{data_set.name}: seeding {data_set.size:,} tokens, keys and refresh tokens")
        started = time.monotonic()
        seeded = seed(data_set.url, Shape(data_set.size, self.profile.sample,
                                          self.profile.pool_size))
        data_set.seed_seconds = time.monotonic() - started
        data_set.counts = seeded.counts
        log(f"{data_set.name}: seeded in {data_set.seed_seconds:.0f} s")
        data_set.rows = data_set_rows(seeded)
        idp_only = {k: v for k, v in env.items() if k not in ("IDP_BIND",)}
        data_set.idp = self.server(f"idp-{data_set.name}", "app:app", idp_only, "/readyz")
        data_set.floor = self.server(f"floor-{data_set.name}", "bench.apps.lookup:app",
                                     {"DATABASE_URL": data_set.url}, "/healthz")

    def values_for(self, m: Measurement, seconds: int, label: str) -> Path | None:
        """Write the credentials one run of a row may use; single-use rows take a fresh slice.

        The files hold raw credentials of a throwaway data set; they are deleted at the end.
        """
        if not m.row.values:
            return None
        if not m.row.single_use:
            path = OUT / f"values-{slug(m)}.txt"
            if not path.exists():
                path.write_text("\n".join(m.row.values) + "\n")
            return path
        need = (m.row.pool_rate or self.profile.pool_rate) * seconds
        chosen = m.row.values[m.offset:m.offset + need]
        m.offset += need
        path = OUT / f"values-{slug(m)}-{label}.txt"
        path.write_text("\n".join(chosen) + "\n")
        return path

    def drive(self, m: Measurement, seconds: int, label: str) -> load.Outcome:
        """One row for ``seconds`` of load."""
        plan_path = OUT / f"plan-{slug(m)}.lua"
        load.write_plan(plan_path, m.row.plan, self.values_for(m, seconds, label))
        time.sleep(SETTLE)
        return load.run(m.server.url, plan_path, seconds, self.profile.connections,
                        self.profile.threads)

    def measure(self) -> None:
        """A warm-up pass over every row, then the rounds, each visiting every row once."""
        log(f"warm-up: {len(self.measurements)} rows x {self.profile.warmup} s")
        for m in self.measurements:
            started = time.monotonic()
            m.warmup = self.drive(m, self.profile.warmup, "warmup")
            log(f"  {slug(m)}: {m.warmup.rate:.0f} req/s ({time.monotonic() - started:.1f} s)")
            if m.warmup.errors:
                raise RuntimeError(f"{slug(m)} answered wrongly during warm-up: "
                                   f"{m.warmup.first_wrong or m.warmup}")
        for r in range(self.profile.rounds):
            log(f"round {r + 1}/{self.profile.rounds}")
            # Rotate the order so no row always follows the same neighbour.
            shift = r % len(self.measurements)
            for m in self.measurements[shift:] + self.measurements[:shift]:
                m.rounds.append(self.drive(m, self.profile.duration, f"r{r + 1}"))
        self.memory = {server.name: server.worker_memory() for server in self.servers}


def slug(m: Measurement) -> str:
    """File-name-safe name of a measurement."""
    return f"{m.data_set.name}-{m.row.key}" if m.data_set else m.row.key
