import boto3
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from moto import mock_aws
from storages.backends.s3 import S3Storage

from sessions.storage import storage_aiter_range, storage_delete_prefix, storage_iter_range, storage_size


def fill(storage) -> None:
    for name in ("c1/s1/audio.wav", "c1/s1/parts/p0.pcm", "c1/s1/parts/p1.pcm", "c1/s2/audio.wav", "c2/s1/audio.wav"):
        storage.save(name, ContentFile(b"0123456789"))


def test_it_deletes_a_prefix_recursively_on_the_file_system(tmp_path):
    storage = FileSystemStorage(location=tmp_path)
    fill(storage)
    assert storage_delete_prefix("c1/s1/", storage=storage) == 3
    assert not (tmp_path / "c1" / "s1").exists()
    assert storage.exists("c1/s2/audio.wav") and storage.exists("c2/s1/audio.wav")
    assert storage_delete_prefix("c1/s1/", storage=storage) == 0


@pytest.mark.parametrize("prefix", ["", "/", "c1", "/c1/", "c1/../"])
def test_it_refuses_prefixes_that_could_reach_other_tenants(tmp_path, prefix):
    with pytest.raises(ValueError):
        storage_delete_prefix(prefix, storage=FileSystemStorage(location=tmp_path))


def test_it_reads_byte_ranges_from_files(tmp_path):
    storage = FileSystemStorage(location=tmp_path)
    fill(storage)
    assert storage_size("c1/s1/audio.wav", storage=storage) == 10
    assert storage_size("c9/none.wav", storage=storage) is None
    data = b"".join(storage_iter_range("c1/s1/audio.wav", start=3, length=4, storage=storage, chunk_size=3))
    assert data == b"3456"


@mock_aws
def test_it_deletes_a_prefix_and_reads_ranges_on_s3():
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="voiceai-test")
    storage = S3Storage(bucket_name="voiceai-test", region_name="us-east-1", location="media")
    fill(storage)
    assert b"".join(storage_iter_range("c1/s2/audio.wav", start=8, length=2, storage=storage)) == b"89"
    assert storage_size("c1/s2/audio.wav", storage=storage) == 10
    assert storage_delete_prefix("c1/s1/", storage=storage) == 3
    keys = {o.key for o in storage.bucket.objects.all()}
    assert keys == {"media/c1/s2/audio.wav", "media/c2/s1/audio.wav"}


async def test_it_streams_a_range_asynchronously_for_asgi(tmp_path):
    storage = FileSystemStorage(location=tmp_path)
    storage.save("c1/s1/audio.wav", ContentFile(bytes(range(200))))
    chunks = [
        chunk
        async for chunk in storage_aiter_range("c1/s1/audio.wav", start=5, length=150, storage=storage, chunk_size=64)
    ]
    assert [len(c) for c in chunks] == [64, 64, 22]
    assert b"".join(chunks) == bytes(range(5, 155))
