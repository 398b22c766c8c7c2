"""A real Orthanc PACS on free loopback ports with its own config and storage,
started by the tests (never the system service), and a little REST client.
Tests skip (not fail) where Orthanc is not installed (apt-get install orthanc)."""
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional

from tests.mosquitto import free_port, stop_process

SKIP_REASON = "Orthanc is not installed (apt-get install orthanc); the PACS tests need a real PACS"


def orthanc_binary() -> Optional[str]:
    for path in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc"):
        if os.access(path, os.X_OK):
            return path
    return shutil.which("Orthanc")


class Orthanc:
    """One Orthanc process; restart() keeps its ports and its storage."""

    def __init__(self, workdir: str, aet: str = "ORTHANC"):
        binary = orthanc_binary()
        if binary is None:
            raise RuntimeError(SKIP_REASON)
        self.binary, self.workdir, self.aet = binary, workdir, aet
        os.makedirs(workdir, exist_ok=True)
        self.dicom_port, self.http_port = free_port(), free_port()
        self.config_path = os.path.join(workdir, "orthanc.json")
        self.log_path = os.path.join(workdir, "orthanc.log")
        config = {
            "Name": "pneumo-edge-test", "DicomAet": aet, "DicomPort": self.dicom_port,
            "HttpPort": self.http_port, "StorageDirectory": os.path.join(workdir, "storage"),
            "IndexDirectory": os.path.join(workdir, "index"), "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomCheckCalledAet": True, "Plugins": [],
            "HttpServerEnabled": True, "DicomServerEnabled": True, "StableAge": 1,
            "DicomThreadsCount": 2, "HttpThreadsCount": 4, "ConcurrentJobs": 1,
            "SaveJobs": False, "DicomModalities": {},
        }
        with open(self.config_path, "w") as fh:
            json.dump(config, fh, indent=1)
        self.proc = None  # type: Optional[subprocess.Popen]

    def start(self, timeout: float = 30.0) -> "Orthanc":
        self.proc = subprocess.Popen([self.binary, self.config_path], stdout=open(self.log_path, "ab"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("Orthanc exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                self.get("/system")
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("Orthanc did not answer on port %d within %.0f s\n%s"
                           % (self.http_port, timeout, self.log_tail()))

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, grace_s=15)

    def _request(self, path: str, body: Optional[bytes] = None) -> bytes:
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.http_port, path), data=body)
        with urllib.request.urlopen(req, timeout=10) as rsp:
            return rsp.read()

    def get(self, path: str) -> Any:
        return json.loads(self._request(path))

    def file(self, instance_id: str) -> bytes:
        return self._request("/instances/%s/file" % instance_id)

    def instances_of_study(self, study_uid: str) -> List[Dict[str, Any]]:
        """Instances of the study (Orthanc's expanded records), by StudyInstanceUID."""
        body = json.dumps({"Level": "Instance", "Query": {"StudyInstanceUID": study_uid},
                           "Expand": True}).encode()
        return json.loads(self._request("/tools/find", body))

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return "(no Orthanc log)"
