# Validate environment
python -c "from rfobs import validate_startup_environment; validate_startup_environment()"

# Run all tests
pytest agents/tests/ --cov=agents --cov-report=html

# Performance baseline
python -c "
import asyncio
from rfobs import benchmark
async def test(): pass
result = asyncio.run(benchmark(test, iterations=1000))
print(f'Baseline: {result.operations_per_second} ops/sec')
"
