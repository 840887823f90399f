"""Settings read once from environment variables (each documented in README.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

DEFAULT_DEV_TOKEN = "devtoken"
# WeChat's message-encryption sample code (WXBizMsgCrypt) publishes these: a server using them can be
# signed for and read by anyone, so they say "development", like the token above.
SAMPLE_TOKEN = "spamtest"
SAMPLE_APPID = "wx2c2769f8efd9abc2"
SAMPLE_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
DEVELOPMENT_TOKENS = (DEFAULT_DEV_TOKEN, SAMPLE_TOKEN)
WECHAT_API_DEFAULT = "https://api.weixin.qq.com"
MIN_ADMIN_TOKEN_CHARS = 24
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(ValueError):
    """A configuration the bot refuses to start with; the message is one line naming the variable."""


class OperatorError(ConfigError):
    """An operator command refused as given (a date that does not exist, nothing to move): one line."""


def _flag(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _per_kind(env: dict[str, str], prefix: str) -> dict[str, str]:
    from integrations.wechat_notice import KINDS

    return {kind: value.strip() for kind in KINDS if (value := env.get(prefix + kind.upper(), "").strip())}


@dataclass(frozen=True)
class Settings:
    wechat_token: str = DEFAULT_DEV_TOKEN
    wechat_appid: str = ""
    wechat_appsecret: str = ""
    wechat_encoding_aes_key: str = ""
    # 兼容模式: plaintext messages accepted besides encrypted ones (only with an EncodingAESKey).
    wechat_compatible_mode: bool = False
    wechat_api_base: str = ""
    wechat_template_id: str = ""
    # Per kind of notice (integrations/wechat_notice.py KINDS): WECHAT_TEMPLATE_<KIND>, WECHAT_SUBSCRIBE_<KIND>.
    wechat_templates: dict[str, str] = field(default_factory=dict)
    wechat_subscribe_templates: dict[str, str] = field(default_factory=dict)
    redis_url: str = ""
    intake_url: str = ""
    intake_secret: str = ""
    region: str = "qingyang"
    host: str = "127.0.0.1"
    port: int = 8080
    var_dir: Path = field(default_factory=lambda: Path("var"))
    simulator: bool | None = None
    intake_sandbox: bool = False
    # BOT_WECHAT_SANDBOX: the WeChat API sandbox (pushed messages readable by openid) on a real account.
    wechat_sandbox: bool = False
    data_keys: str = ""
    # Bearer token for operator endpoints (/metrics; the intake sandbox's listings and /emit).
    admin_token: str = ""
    # Timestamps further than this from our clock are replays (or a broken clock).
    max_clock_skew_s: int = 300
    max_body_bytes: int = 64 * 1024
    # WeChat gives up after 5 s; we answer "please retry" well before that.
    turn_deadline_s: float = 4.0
    # WeChat sends a body at once: one that takes longer than this to arrive is dropped (408).
    body_read_timeout_s: float = 10.0
    # A connection with no complete request for this long is closed: headers dribbled byte by byte, or an
    # idle keep-alive (aiohttp's own default, 75 s, let a slow client hold a connection that long).
    idle_timeout_s: float = 10.0
    # BOT_TODAY: act as on this day (a simulation, or the suite on another date); empty = today.
    today: str = ""
    log_format: str = "text"
    log_level: str = "INFO"
    # BOT_CONSOLE=1: the staff console at /console, answering only addresses in BOT_CONSOLE_NETWORKS.
    console: bool = False
    console_networks: str = "127.0.0.1/32,::1/128"
    # BOT_CONSOLE_PROXIES: reverse proxies (networks) whose X-Forwarded-For names the staff's address.
    console_proxies: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        port = env.get("BOT_PORT") or "8080"
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"BOT_PORT must be a port number, not {port[:20]!r}")
        return cls(
            wechat_token=env.get("WECHAT_TOKEN") or DEFAULT_DEV_TOKEN,
            wechat_appid=env.get("WECHAT_APPID", ""),
            wechat_appsecret=env.get("WECHAT_APPSECRET", ""),
            wechat_encoding_aes_key=env.get("WECHAT_ENCODING_AES_KEY", ""),
            wechat_compatible_mode=bool(_flag(env.get("WECHAT_COMPATIBLE_MODE"))),
            wechat_api_base=env.get("WECHAT_API_BASE", ""),
            wechat_template_id=env.get("WECHAT_TEMPLATE_ID", ""),
            wechat_templates=_per_kind(env, "WECHAT_TEMPLATE_"),
            wechat_subscribe_templates=_per_kind(env, "WECHAT_SUBSCRIBE_"),
            redis_url=env.get("REDIS_URL", ""),
            intake_url=env.get("INTAKE_URL", ""),
            intake_secret=env.get("INTAKE_SECRET", ""),
            region=env.get("BOT_REGION") or "qingyang",
            host=env.get("BOT_HOST") or "127.0.0.1",
            port=int(port),
            var_dir=Path(env.get("BOT_VAR_DIR") or "var"),
            simulator=_flag(env.get("BOT_SIMULATOR")),
            intake_sandbox=bool(_flag(env.get("BOT_INTAKE_SANDBOX"))),
            wechat_sandbox=bool(_flag(env.get("BOT_WECHAT_SANDBOX"))),
            data_keys=env.get("BOT_DATA_KEY", ""),
            admin_token=env.get("BOT_ADMIN_TOKEN", ""),
            today=env.get("BOT_TODAY", "").strip(),
            log_format=(env.get("BOT_LOG_FORMAT") or "text").strip().lower(),
            log_level=(env.get("BOT_LOG_LEVEL") or "INFO").strip().upper(),
            console=bool(_flag(env.get("BOT_CONSOLE"))),
            console_networks=env.get("BOT_CONSOLE_NETWORKS") or "127.0.0.1/32,::1/128",
            console_proxies=env.get("BOT_CONSOLE_PROXIES", ""),
        )

    @property
    def has_wechat_credentials(self) -> bool:
        return bool(self.wechat_appid and self.wechat_appsecret)

    @property
    def real_account_signals(self) -> tuple[str, ...]:
        """The variables that say this server talks to a real official account or a real intake: any
        WeChat value that is not a development one, or INTAKE_URL. Any one of them closes the sandboxes,
        the simulator and /metrics unless each is asked for by name."""
        signals = {
            "WECHAT_TOKEN": self.wechat_token not in DEVELOPMENT_TOKENS,
            "WECHAT_APPID": self.wechat_appid not in ("", SAMPLE_APPID),
            "WECHAT_ENCODING_AES_KEY": self.wechat_encoding_aes_key not in ("", SAMPLE_AES_KEY),
            "WECHAT_APPSECRET": bool(self.wechat_appsecret),
            "INTAKE_URL": bool(self.intake_url),
        }
        return tuple(name for name, real in signals.items() if real)

    @property
    def account_secret(self) -> str:
        """The first secret of the account that is not public ("" in development): the AppSecret, else
        the EncodingAESKey, else the token."""
        for value, public in (
            (self.wechat_appsecret, ("",)),
            (self.wechat_encoding_aes_key, ("", SAMPLE_AES_KEY)),
            (self.wechat_token, DEVELOPMENT_TOKENS),
        ):
            if value not in public:
                return value
        return ""

    @property
    def simulator_enabled(self) -> bool:
        """The simulator hands the WeChat token to any browser, so by default it runs only in development
        (no real-account signal, the public development token); BOT_SIMULATOR=1 opens it on a real account
        (a warning at start) but never with a token that is not a development one (validate refuses)."""
        if self.simulator is not None:
            return self.simulator
        return not self.real_account_signals and self.wechat_token == DEFAULT_DEV_TOKEN

    @property
    def wechat_sandbox_enabled(self) -> bool:
        """WeChat's API imitated at /sandbox/wechat, where pushed messages (application status) are readable
        by openid: in development, or with BOT_WECHAT_SANDBOX=1; never with an AppSecret (pushes go to WeChat)."""
        if self.has_wechat_credentials:
            return False
        return self.wechat_sandbox or not self.real_account_signals

    @property
    def intake_sandbox_enabled(self) -> bool:
        """The intake imitated at /sandbox/intake: without INTAKE_URL, in development or with BOT_INTAKE_SANDBOX=1."""
        if self.intake_url:
            return False
        return self.intake_sandbox or not self.real_account_signals

    @property
    def operator_token(self) -> str | None:
        """What operator endpoints ask for: a bearer token (BOT_ADMIN_TOKEN); "" = closed (a real-account
        signal and no BOT_ADMIN_TOKEN: they answer 404); None = open (development)."""
        if self.admin_token:
            return self.admin_token
        return "" if self.real_account_signals else None

    def start_warnings(self) -> list[str]:
        """What is open or weak on a real account because it was asked for: said at WARNING at every start."""
        signals = self.real_account_signals
        if not signals:
            return []
        why = f"a real account ({', '.join(signals)})"
        warnings = []
        if self.simulator_enabled:
            warnings.append(f"BOT_SIMULATOR=1 on {why}: /simulator signs messages for anyone who can reach this server")
        if self.wechat_sandbox_enabled:
            warnings.append(
                f"BOT_WECHAT_SANDBOX=1 on {why}: pushed messages (application status) are readable by anyone "
                "at /sandbox/wechat/inbox/<openid>"
            )
        if self.intake_sandbox_enabled:
            warnings.append(f"BOT_INTAKE_SANDBOX=1 on {why}: applications go to the built-in intake sandbox, not to the county")
        if not self.safe_mode:
            warnings.append(
                f"plain mode on {why}: citizens' messages (ID numbers, phones) travel unencrypted between WeChat and "
                "this server; choose 安全模式 in the WeChat console and set WECHAT_ENCODING_AES_KEY"
            )
        if not self.wechat_appsecret:
            warnings.append(f"no WECHAT_APPSECRET on {why}: status messages and reminders cannot be pushed")
        return warnings

    @property
    def safe_mode(self) -> bool:
        return bool(self.wechat_encoding_aes_key)

    @property
    def api_base(self) -> str:
        return self.wechat_api_base or WECHAT_API_DEFAULT

    @property
    def self_url(self) -> str:
        """Where this bot answers on this machine (its sandboxes call it back there)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def validate(self) -> None:
        """Refuse a configuration that would fail later, when a citizen is waiting, or lose data."""
        problems = []
        if self.redis_url and not self.redis_url.startswith(REDIS_SCHEMES):
            problems.append(f"REDIS_URL must start with one of {', '.join(REDIS_SCHEMES)}")
        if self.data_keys:
            from integrations.sealing import parse_data_keys

            try:
                parse_data_keys(self.data_keys)
            except ValueError as e:
                problems.append(f"BOT_DATA_KEY: {e}")
        elif self.redis_url or self.has_wechat_credentials:
            # Each process would make its own var/data.key: on a shared Redis one cannot open what another
            # sealed, and a lost file loses every citizen's data. Production keys come from a secret store.
            problems.append("BOT_DATA_KEY is required with REDIS_URL or real WeChat credentials (make one with `bot keygen`)")
        if self.today:
            try:
                date.fromisoformat(self.today)
            except ValueError:
                problems.append("BOT_TODAY must be a date like 2027-06-15")
        if self.log_format not in LOG_FORMATS:
            problems.append(f"BOT_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
        if self.log_level not in LOG_LEVELS:
            problems.append(f"BOT_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        if self.intake_url and not self.intake_secret:
            problems.append("INTAKE_URL is set but INTAKE_SECRET is not: deliveries could not be signed")
        if self.wechat_encoding_aes_key and len(self.wechat_encoding_aes_key) != 43:
            problems.append("WECHAT_ENCODING_AES_KEY must be 43 characters")
        if self.real_account_signals and not self.intake_url and not self.intake_sandbox:
            problems.append(
                f"a real account ({', '.join(self.real_account_signals)}) but no INTAKE_URL: applications would only reach the sandbox "
                "(set INTAKE_URL, or BOT_INTAKE_SANDBOX=1 for a trial)"
            )
        if bool(self.wechat_appid) != bool(self.wechat_appsecret) and not self.wechat_encoding_aes_key:
            problems.append("set WECHAT_APPID and WECHAT_APPSECRET together")
        if self.has_wechat_credentials and self.wechat_token == DEFAULT_DEV_TOKEN:
            problems.append("real WeChat credentials with the development WECHAT_TOKEN: anyone could sign messages")
        if self.simulator and self.wechat_token not in DEVELOPMENT_TOKENS:
            problems.append(
                "BOT_SIMULATOR=1 with a WECHAT_TOKEN that is not a development one: the simulator would hand it to every browser"
            )
        if self.admin_token and len(self.admin_token) < MIN_ADMIN_TOKEN_CHARS:
            problems.append(
                f"BOT_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_CHARS} characters "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if self.console:
            from bot.console.networks import network_problem

            problems += network_problem(self.console_networks)
            problems += network_problem(self.console_proxies, "BOT_CONSOLE_PROXIES", empty_ok=True)
        if problems:
            raise ConfigError("; ".join(problems))

    def with_(self, **changes) -> Settings:
        return replace(self, **changes)
