import re
from pathlib import Path

import pytest

from its_faust.assets import AssetNotFound, resolve_asset
from its_faust.settings import cpu_quota, load_settings, usable_cores


def test_environment_overrides_nested_settings(monkeypatch):
    monkeypatch.setenv("ITS_FAUST_MODEL__BACKEND", "torch")
    monkeypatch.setenv("ITS_FAUST_MODEL__CLASSES", "[2, 7]")
    monkeypatch.setenv("ITS_FAUST_BROKER_URL", "kafka://example:9092")
    settings = load_settings()
    assert settings.model.backend == "torch"
    assert settings.model.classes == [2, 7]
    assert settings.broker_url == "kafka://example:9092"


def test_profile_file_applies_and_environment_wins(monkeypatch):
    monkeypatch.setenv("ITS_FAUST_PROFILE", "production")
    assert load_settings().partitions == 32 and load_settings().log_json is True
    assert load_settings().replication_factor == 3
    monkeypatch.setenv("ITS_FAUST_PARTITIONS", "12")
    assert load_settings().partitions == 12


def test_a_profile_named_in_lower_case_letters_is_applied_whole_and_settings_name_their_source(monkeypatch):
    """its_faust_profile=production set the profile field but not its file: one profile's values under another's
    name. And `settings` said a lower-case variable's value came from the profile."""
    from its_faust.settings import describe

    monkeypatch.setenv("its_faust_profile", "Production")
    settings = load_settings()
    assert settings.profile.value == "production" and settings.partitions == 32 and settings.replication_factor == 3
    monkeypatch.setenv("its_faust_partitions", "7")
    monkeypatch.setenv("ITS_FAUST_MODEL", '{"imgsz": 320}')
    rows = {row["variable"]: row for row in describe(load_settings())}
    assert rows["ITS_FAUST_PARTITIONS"]["value"] == 7 and rows["ITS_FAUST_PARTITIONS"]["set_by"] == "the environment"
    assert rows["ITS_FAUST_MODEL__IMGSZ"]["set_by"] == "the environment (ITS_FAUST_MODEL)"
    assert rows["ITS_FAUST_REPLICATION_FACTOR"]["set_by"] == "the production profile"


def test_a_settings_source_is_the_one_that_wins(monkeypatch, tmp_path):
    """The environment's JSON group beats .env's own variable: the value was the environment's, the source said .env."""
    from its_faust.settings import describe

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("ITS_FAUST_MODEL__IMGSZ=416\n")
    monkeypatch.setenv("ITS_FAUST_MODEL", '{"imgsz": 320}')
    row = next(r for r in describe(load_settings()) if r["variable"] == "ITS_FAUST_MODEL__IMGSZ")
    assert row["value"] == 320 and row["set_by"] == "the environment (ITS_FAUST_MODEL)"


def test_an_empty_folder_setting_is_its_default_and_tracker_thresholds_are_checked(monkeypatch):
    monkeypatch.setenv("ITS_FAUST_DATA_DIR", "")  # was the current folder, filled with a worker's tables
    monkeypatch.setenv("ITS_FAUST_CACHE_DIR", "")
    settings = load_settings()
    assert settings.data_dir == Path(".its-faust") and settings.cache_dir == Path.home() / ".cache" / "its-faust"
    for variable, value, reason in (("ITS_FAUST_TRACKER__TRACK_BUFFER", "-5", "greater than or equal to 1"),
                                    ("ITS_FAUST_TRACKER__TRACK_LOW_THRESH", "0.9", "must be at most"),
                                    ("ITS_FAUST_API__PORT", "0", "greater than or equal to 1"),
                                    ("ITS_FAUST_MODEL__IMGSZ", "100", "multiple of 32")):
        monkeypatch.setenv(variable, value)
        with pytest.raises(ValueError, match=reason):
            load_settings()
        monkeypatch.delenv(variable)


def test_the_worker_app_takes_its_producer_linger_from_settings(monkeypatch):
    from its_faust.app import create_app

    monkeypatch.setenv("ITS_FAUST_PRODUCER_LINGER_MS", "5")
    app = create_app(load_settings())
    assert app.conf.producer_linger == 0.005
    assert create_app(load_settings(producer_linger_ms=0)).conf.producer_linger == 0


def test_topics_and_changelogs_get_the_configured_replicas(monkeypatch):
    from its_faust.app import create_app

    assert load_settings().replication_factor == 1  # the embedded broker has one node
    monkeypatch.setenv("ITS_FAUST_REPLICATION_FACTOR", "3")
    app = create_app(load_settings())
    assert app.conf.topic_replication_factor == 3
    # (Faust declares agents' topics and table changelogs that set no replicas of their own with it)


def test_the_pipeline_topics_are_created_with_the_configured_replicas(monkeypatch):
    import asyncio

    import aiokafka.admin

    from its_faust import topic_names

    created = []

    class Admin:  # the create request, as the broker would get it
        def __init__(self, **kwargs): ...
        async def start(self): ...
        async def close(self): ...
        async def list_topics(self): return ["its.frames"]
        async def create_topics(self, topics): created.extend(topics)
        async def describe_topics(self, topics): return [{"topic": t, "error_code": 0, "partitions": [{}] * 6} for t in topics]

    monkeypatch.setattr(aiokafka.admin, "AIOKafkaAdminClient", Admin)
    asyncio.run(topic_names.ensure_topics("127.0.0.1:1", load_settings(replication_factor=3, partitions=6)))
    assert len(created) == len(topic_names.ALL) - 1 and "its.frames" not in {t.name for t in created}
    assert {(t.num_partitions, t.replication_factor) for t in created} == {(6, 3)}


def test_a_profile_named_in_dot_env_is_the_one_applied(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ITS_FAUST_PROFILE", raising=False)
    (tmp_path / ".env").write_text("ITS_FAUST_PROFILE=production\n")
    settings = load_settings()
    assert settings.profile.value == "production" and settings.partitions == 32  # not production by name, local by values
    monkeypatch.setenv("ITS_FAUST_PROFILE", "staging")  # the environment wins, as for every setting
    assert load_settings().partitions == 16


def test_variables_that_are_no_setting_are_found_with_the_setting_they_look_like(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from its_faust.cli import main
    from its_faust.cli_support import _warn_of_unknown_variables
    from its_faust.settings import get_settings, unknown_variables

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("ITS_FAUST_API__PROT=9000\n")
    monkeypatch.setenv("ITS_FAUST_MODEL_BACKEND", "torch")  # one underscore for two
    monkeypatch.setenv("ITS_FAUST_RESTARTS_FOR_LOST_LOGS", "1")  # the project's own, for processes it starts
    monkeypatch.setenv("ITS_FAUST_MODEL__IMGSZ", "320")
    assert unknown_variables() == [("ITS_FAUST_API__PROT", "ITS_FAUST_API__PORT"),
                                   ("ITS_FAUST_MODEL_BACKEND", "ITS_FAUST_MODEL__BACKEND")]
    get_settings.cache_clear()
    _warn_of_unknown_variables.cache_clear()  # (once a process: another test's command may have been first)
    try:
        result = CliRunner().invoke(main, ["settings", "imgsz"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0
    assert ("its-faust: warning: ITS_FAUST_MODEL_BACKEND is not a setting and changes nothing "
            "(did you mean ITS_FAUST_MODEL__BACKEND?)") in result.output


def test_classes_take_commas_or_json_and_a_bad_one_is_named(monkeypatch):
    from its_faust.settings import invalid_settings

    monkeypatch.setenv("ITS_FAUST_MODEL__CLASSES", "2, 7")
    assert load_settings().model.classes == [2, 7]
    for value, said in (("2,car", "ITS_FAUST_MODEL__CLASSES (its item 2): Input should be a valid integer"),
                        ("", "ITS_FAUST_MODEL__CLASSES: List should have at least 1 item"),
                        ("[2,", "ITS_FAUST_MODEL__CLASSES: '[2,' is not a JSON list")):
        monkeypatch.setenv("ITS_FAUST_MODEL__CLASSES", value)
        with pytest.raises(ValueError) as error:
            load_settings()
        assert said in invalid_settings(error.value)


def test_a_group_given_as_json_that_is_not_names_its_variable(monkeypatch):
    from its_faust.settings import invalid_settings

    monkeypatch.setenv("ITS_FAUST_API", "{port: 9}")
    with pytest.raises(ValueError) as error:
        load_settings()
    assert invalid_settings(error.value).startswith(
        "invalid settings: ITS_FAUST_API (in the environment) is not the JSON object it must be (")


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("ITS_FAUST_PROFILE", "prod")
    with pytest.raises(ValueError, match="unknown profile 'prod'"):
        load_settings()


def test_assets_resolve_from_the_asset_directory(settings):
    assert resolve_asset("yolo11n.pt", settings.asset_dir).parent.name == "models"
    assert resolve_asset("dual_carriageway_abhishek.mp4", settings.asset_dir).parent.name == "videos"


def test_explicit_path_wins(tmp_path):
    weights = tmp_path / "mine.pt"
    weights.write_bytes(b"x")
    assert resolve_asset(str(weights), tmp_path / "elsewhere") == weights.resolve()


def test_missing_asset_names_file_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    with pytest.raises(AssetNotFound) as err:
        resolve_asset("yolo99x.pt", tmp_path)
    message = str(err.value)
    assert "yolo99x.pt" in message and str(tmp_path / "models") in message and "ITS_FAUST_ASSET_DIR" in message
    with pytest.raises(AssetNotFound, match=str(Path("data") / "videos")):
        resolve_asset("nowhere.mp4", tmp_path)


def test_a_misspelt_asset_gets_the_close_names_or_the_list(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    videos = tmp_path / "data" / "videos"
    videos.mkdir(parents=True)
    for name in ("dual_carriageway_abhishek.mp4", "road_overhead.mp4", "README.md"):
        (videos / name).write_bytes(b"")
    with pytest.raises(AssetNotFound, match=r"Did you mean dual_carriageway_abhishek\.mp4\?"):
        resolve_asset("dual_carriageway.mp4", tmp_path)
    with pytest.raises(AssetNotFound, match=r"has: dual_carriageway_abhishek\.mp4, road_overhead\.mp4\. Put"):
        resolve_asset("zzz.mp4", tmp_path)


def test_missing_weights_say_the_download_failed_too(tmp_path, monkeypatch):
    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    monkeypatch.setattr("its_faust.assets._ultralytics_download", lambda name: None)  # as with no internet
    with pytest.raises(AssetNotFound, match="download of it failed too"):
        resolve_asset("yolo11n.pt", tmp_path)


def test_still_scene_samples_too_far_apart_for_tracks_or_alerts_are_refused(monkeypatch):
    assert load_settings().ingest.frozen_keepalive_s == 0.25
    monkeypatch.setenv("ITS_FAUST_INGEST__FROZEN_KEEPALIVE_S", "0.3")  # speeds need 4 positions in 1 s
    with pytest.raises(ValueError, match=r"FROZEN_KEEPALIVE_S \(0.3\) must be at most ITS_FAUST_ANALYTICS__SPEED_WINDOW_S / 4"):
        load_settings()
    monkeypatch.setenv("ITS_FAUST_INGEST__FROZEN_KEEPALIVE_S", "0.5")
    monkeypatch.setenv("ITS_FAUST_ANALYTICS__SPEED_WINDOW_S", "3")
    monkeypatch.setenv("ITS_FAUST_TRACKER__MAX_GAP_S", "0.8")
    with pytest.raises(ValueError, match=r"must be at most ITS_FAUST_TRACKER__MAX_GAP_S / 2 \(0.4\)"):
        load_settings()
    monkeypatch.setenv("ITS_FAUST_TRACKER__MAX_GAP_S", "1.0")
    assert load_settings().ingest.frozen_keepalive_s == 0.5


def test_log_level_takes_any_case_and_the_logging_aliases(monkeypatch):
    for given, level in (("DEBUG", "debug"), ("Warn", "warning"), ("fatal", "critical")):
        monkeypatch.setenv("ITS_FAUST_LOG_LEVEL", given)
        assert load_settings().log_level == level


def test_the_settings_command_lists_every_setting_with_its_value_default_and_variable(monkeypatch, tmp_path):
    """`its-faust settings`: what a command started here would use, and what differs from the defaults."""
    import json

    from click.testing import CliRunner

    from its_faust.cli import main
    from its_faust.settings import get_settings

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("ITS_FAUST_API__LIVE_FPS=6\n")
    monkeypatch.setenv("ITS_FAUST_PROFILE", "staging")
    monkeypatch.setenv("ITS_FAUST_API__PORT", "9123")
    get_settings.cache_clear()
    try:
        listed = json.loads(CliRunner().invoke(main, ["settings", "--json"]).output)
        changed = CliRunner().invoke(main, ["settings", "--changed"]).output
        api_only = CliRunner().invoke(main, ["settings", "live_fps"]).output
    finally:
        get_settings.cache_clear()
    rows = {r["variable"]: r for r in listed}
    assert rows["ITS_FAUST_API__PORT"] == {**rows["ITS_FAUST_API__PORT"], "value": 9123, "default": 8000, "changed": True}
    assert rows["ITS_FAUST_PARTITIONS"]["value"] == 16 and rows["ITS_FAUST_MODEL__CLASSES"]["value"] == [0, 1, 2, 3, 5, 7]
    assert "ITS_FAUST_TRACKER__MAX_GAP_S" in rows and all(r["description"] for r in listed)  # nested ones too, each said
    # Each change says what made it (a value from a profile looked like a default gone wrong).
    assert "ITS_FAUST_API__PORT=9123   (default: 8000; set by the environment)" in changed
    assert "ITS_FAUST_LOG_JSON=true   (default: false; set by the staging profile)" in changed
    assert "ITS_FAUST_API__LIVE_FPS=6.0   (default: 4.0; set by .env)" in changed
    assert "ITS_FAUST_MODEL__IMGSZ" not in changed and rows["ITS_FAUST_MODEL__IMGSZ"]["set_by"] == ""
    assert api_only.startswith("ITS_FAUST_API__LIVE_FPS=6.0")
    assert [line for line in api_only.splitlines() if not line.startswith(" ")] == ["ITS_FAUST_API__LIVE_FPS=6.0   (default: 4.0; set by .env)"]


def test_usable_cores_keep_within_a_containers_cpu_quota(tmp_path, monkeypatch):
    """`docker run --cpus=2` or a Kubernetes CPU limit on a 32-core host: threads sized for 32 are throttled."""
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(32)))
    assert cpu_quota(tmp_path) is None and usable_cores(tmp_path) == 32  # no cgroup files: the CPU set
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(tmp_path) is None and usable_cores(tmp_path) == 32
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # cgroup v2: 2.5 cores
    assert cpu_quota(tmp_path) == 2.5 and usable_cores(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert usable_cores(tmp_path) == 1  # half a core is still one thread
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu,cpuacct").mkdir()  # cgroup v1
    (tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores(tmp_path) == 32
    (tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("400000\n")
    assert usable_cores(tmp_path) == 4
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert usable_cores(tmp_path) == 2  # a CPU set smaller than the quota


def test_every_table_keeps_small_write_buffers():
    """RocksDB's defaults (64 MB write buffers, three of them, a 2 GB cache) for every table partition: the actors
    rewrite each camera's state every half second, and a worker's memory grew 5.5 MB a minute in a soak run."""
    from its_faust.app import TABLE_STORE_OPTIONS
    from tables import analytics_table, config_table, count_tables, tracker_table

    tables = [analytics_table.analytics_states, config_table.config_table, tracker_table.tracker_states,
              *(getattr(count_tables, name) for name in dir(count_tables) if name.endswith(("_minute", "_quarter", "_total")))]
    stores = {t.name: t.data.rocksdb_options for t in tables}
    assert {"camera-tracker", "camera-analytics", "camera-config", "line-counts-minute", "zone-stats-total"} <= set(stores)
    assert {(o.write_buffer_size, o.max_write_buffer_number, o.block_cache_size) for o in stores.values()} == {
        (4 << 20, 2, 16 << 20)} and TABLE_STORE_OPTIONS["write_buffer_size"] == 4 << 20


def test_a_search_that_matches_no_setting_says_so_on_stderr_and_fails_as_grep_does():
    """It printed "no setting matches" on stdout with status 0: a script took the message for a value."""
    from click.testing import CliRunner

    from its_faust.cli import main

    done = CliRunner().invoke(main, ["settings", "nosuchthing"])
    assert done.exit_code == 1 and done.stdout == "" and "no setting matches 'nosuchthing'" in done.stderr


@pytest.mark.parametrize("url, said", [
    ("kafka://127.0.0.1:99999", "port 99999 of 127.0.0.1:99999 is not a port (1-65535)"),
    ("kafka://broker", "broker is not host:port"),
    ("http://broker:9092", "a Kafka broker is kafka://host:port, not http://"),
])
def test_a_broker_url_that_cannot_be_one_says_what_is_wrong(url, said):
    from pydantic import ValidationError

    from its_faust.settings import Settings

    with pytest.raises(ValidationError, match=re.escape(said)):
        Settings(broker_url=url)


def test_onnx_weights_run_on_onnxruntime_whatever_the_device(monkeypatch):
    """The torch backend fed a fixed-input ONNX model the shapes it chose: its worker exited before it was ready
    (an int8 trial); `auto` picked torch wherever CUDA was."""
    monkeypatch.setenv("ITS_FAUST_MODEL__WEIGHTS", "yolo11n-int8-320.onnx")
    model = load_settings().model
    assert model.backend_for(cuda=True) == "onnxruntime" and model.backend_for(cuda=False) == "onnxruntime"
    monkeypatch.setenv("ITS_FAUST_MODEL__BACKEND", "torch")
    with pytest.raises(ValueError, match="are ONNX: they run on the onnxruntime backend"):
        load_settings()
    monkeypatch.delenv("ITS_FAUST_MODEL__BACKEND")
    monkeypatch.delenv("ITS_FAUST_MODEL__WEIGHTS")
    assert load_settings().model.backend_for(cuda=True) == "torch"  # .pt weights: torch on CUDA
