"""The embedded broker: starts on a free loopback port, answers Kafka clients, stops cleanly."""

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from its_faust.broker import BrokerError, EmbeddedBroker, LocalBrokerProcess, bootstrap_servers, check_embedded_allowed, free_port, wait_reachable


def test_bootstrap_servers_from_urls():
    assert bootstrap_servers("kafka://a:9092;b:9093") == "a:9092,b:9093"
    assert bootstrap_servers("kafka://a:9092") == "a:9092"


def test_embedded_broker_round_trip_and_clean_stop():
    async def round_trip(bootstrap):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        await producer.send_and_wait("t", b"hello", key=b"k")
        await producer.stop()
        consumer = AIOKafkaConsumer("t", bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        message = await asyncio.wait_for(consumer.getone(), 10)
        await consumer.stop()
        return message.value

    broker = EmbeddedBroker().start()
    try:
        assert asyncio.run(round_trip(bootstrap_servers(broker.url))) == b"hello"
        assert broker.memory_bytes() > 1_000_000  # the demo shows it: the broker never drops a record
        # Another process (the API) finds it by its port, for its memory.
        elsewhere = LocalBrokerProcess(broker.url)
        assert elsewhere.memory_bytes() > 1_000_000 and elsewhere._process.pid == broker.pid
        process = broker._proc
    finally:
        broker.stop()
    assert process.poll() is not None  # the child is gone
    assert broker.memory_bytes() is None and elsewhere.memory_bytes() is None
    with pytest.raises(BrokerError):
        wait_reachable(broker.url, timeout=0.5)


def test_a_port_in_use_is_one_clear_error_not_a_broker_that_seems_to_start():
    """Another broker on the port answered the readiness check, so ours said it listened, then exited."""
    with EmbeddedBroker() as first:
        with pytest.raises(BrokerError, match=rf"cannot start the embedded broker on 127.0.0.1:{first.port}: .*in use"):
            EmbeddedBroker(port=first.port).start()


def test_unreachable_external_broker_is_one_clear_error():
    with pytest.raises(BrokerError, match=r"broker 127.0.0.1:\d+ is not reachable"):
        wait_reachable(f"kafka://127.0.0.1:{free_port()}", timeout=1)


def test_production_profile_refuses_the_embedded_broker(settings):
    from its_faust.settings import Profile

    check_embedded_allowed(settings)  # local: fine
    with pytest.raises(BrokerError, match="needs ITS_FAUST_BROKER_URL"):
        check_embedded_allowed(settings.model_copy(update={"profile": Profile.production, "broker_url": None}))


def test_a_port_that_is_not_kafka_is_one_clear_error_at_once():
    """An address that accepts TCP but is another service (here one that answers like an HTTP server,
    as uvicorn does to bytes it cannot parse) is named as such, not left to the Kafka client's traceback."""
    import socket
    import threading
    import time

    def answer_like_http(listener):
        with listener:
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                with connection:
                    connection.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    threading.Thread(target=answer_like_http, args=(listener,), daemon=True).start()
    started = time.monotonic()
    with pytest.raises(BrokerError, match=r"127.0.0.1:\d+ answers, but not as a Kafka broker \(it replied b'HTTP/1.1'\)"):
        wait_reachable(f"kafka://127.0.0.1:{port}", timeout=60)
    assert time.monotonic() - started < 30  # another protocol's reply is final: no waiting out the timeout
    listener.close()


def test_a_port_that_accepts_and_stays_silent_is_one_clear_error():
    import socket

    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepted by the kernel's backlog, never answered
        port = listener.getsockname()[1]
        with pytest.raises(BrokerError, match=r"takes connections but does not answer as a Kafka broker \(no reply to a "
                                              r"Kafka request within .* s\): is the broker up, and not hung or overloaded"):
            wait_reachable(f"kafka://127.0.0.1:{port}", timeout=1)
        # A broker still starting (or a proxy before one) may be so too: a worker waiting for it goes on waiting.
        from its_faust.broker import BrokerUnreachable, wait_for_broker

        import time

        t0 = time.monotonic()
        with pytest.raises(BrokerUnreachable):
            wait_for_broker(f"kafka://127.0.0.1:{port}", timeout=3, say_every_s=1)
        assert time.monotonic() - t0 >= 2.5  # its whole time, not one slice of it


def test_a_worker_that_starts_before_its_broker_waits_for_it_and_says_so(caplog):
    """Compose and Kubernetes may start a worker or the API before Kafka: it waits ITS_FAUST_BROKER_WAIT_S."""
    import threading
    import time

    from its_faust.broker import BrokerUnreachable, wait_for_broker

    port = free_port()
    started = []
    late = threading.Timer(1.5, lambda: started.append(EmbeddedBroker(port=port).start()))
    late.start()
    try:
        t0 = time.monotonic()
        wait_for_broker(f"kafka://127.0.0.1:{port}", timeout=60, say_every_s=0.5)
        assert time.monotonic() - t0 >= 1.4  # until the broker answered
    finally:
        late.join()
        for broker in started:
            broker.stop()
    assert "is not reachable (Connection refused); waiting for it" in caplog.text
    with pytest.raises(BrokerUnreachable):  # and within its time, if it never comes
        wait_for_broker(f"kafka://127.0.0.1:{free_port()}", timeout=0.5, say_every_s=0.2)


def test_only_an_embedded_broker_on_this_machine_is_read_for_its_memory():
    """What listens on a loopback port may be Kafka or anything else: only Tansu, the embedded broker, is told."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert LocalBrokerProcess(f"kafka://127.0.0.1:{listener.getsockname()[1]}").memory_bytes() is None
    for elsewhere in ("kafka://kafka-1:9092", "kafka://127.0.0.1:9092;127.0.0.1:9093"):
        assert LocalBrokerProcess(elsewhere).port is None and LocalBrokerProcess(elsewhere).memory_bytes() is None
