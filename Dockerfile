FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt
COPY . .
RUN useradd --create-home clm && mkdir -p /data && chown clm /data
USER clm
EXPOSE 8000
CMD ["gunicorn", "clmsite.wsgi", "-b", "0.0.0.0:8000"]
