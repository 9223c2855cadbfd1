"""HTTP decision service: FastAPI app (:mod:`engine.serve.app`) and ``loopwise serve``."""
